"""Numeric precision chosen at run time: bf16 where the hardware makes it fast, fp32 elsewhere.

Measured (scripts/results/bench_precision.md): on an Intel Xeon with AMX, bf16 matmuls run several
times faster than fp32 and `bf16-mixed` training is faster; on AMD EPYC hosts with AVX2 only bf16
is emulated and ~16x slower. `auto` (the default of `llada.generate`; `trainer.precision=auto`
for training) picks per machine; any Lightning precision string overrides it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from llada.machine import cpu_isa

AUTO = "auto"
# CPU features that make bf16 matmuls faster than fp32 (AMX tiles); AVX-512 BF16 alone is not
# enough to be sure, so such hosts keep fp32.
FAST_BF16_CPU = "amx_bf16"


def resolve_precision(
    requested: str, accelerator: str = "cpu", isa: list[str] | None = None
) -> str:
    """A Lightning precision string: `requested` itself, or what `auto` means on this machine.

    auto -> `bf16-mixed` on a GPU with bf16 support or a CPU with AMX-BF16, else `32-true`.
    """
    if requested != AUTO:
        return requested
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return (
            "bf16-mixed"
            if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            else "32-true"
        )
    features = cpu_isa() if isa is None else isa
    return "bf16-mixed" if FAST_BF16_CPU in features else "32-true"


def autocast_for(precision: str, device_type: str) -> AbstractContextManager:
    """bf16 autocast for inference when `precision` (resolved) is a bf16 one; else nothing."""
    if precision.startswith("bf16"):
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return nullcontext()
