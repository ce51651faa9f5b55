"""Precision chosen at run time: bf16 only where the hardware makes it fast, overridable."""

from __future__ import annotations

import pytest
import torch

from llada.precision import autocast_for, resolve_precision

AMD_AVX2 = ["avx2", "fma"]
INTEL_AMX = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"]
COOPER_LAKE = ["avx2", "avx512f", "avx512_bf16", "fma"]  # bf16 instructions, no AMX tiles


@pytest.mark.parametrize(
    ("isa", "expected"),
    [(AMD_AVX2, "32-true"), (INTEL_AMX, "bf16-mixed"), (COOPER_LAKE, "32-true"), ([], "32-true")],
)
def test_auto_on_a_cpu_follows_its_instruction_set(isa: list[str], expected: str) -> None:
    assert resolve_precision("auto", "cpu", isa=isa) == expected


@pytest.mark.parametrize("given", ["32-true", "bf16-mixed", "16-mixed", "64-true"])
def test_an_explicit_precision_is_kept_whatever_the_machine(given: str) -> None:
    assert resolve_precision(given, "cpu", isa=INTEL_AMX) == given
    assert resolve_precision(given, "cpu", isa=AMD_AVX2) == given


def test_autocast_only_for_bf16() -> None:
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast_for("bf16-mixed", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with autocast_for("32-true", "cpu"):
        assert layer(x).dtype == torch.float32
