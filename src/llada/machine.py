"""What machine a figure was measured on: CPU model, vector ISA, threads, torch build.

Exact values differ across CPUs (different float paths; bf16 is fast on AMX and slow on AVX2
only), so every benchmark prints and stores this beside its numbers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_isa() -> list[str]:
    """The vector-ISA flags that decide the float path (avx2, avx512f, amx_bf16, ...)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in ISA_FLAGS if flag in flags]
    return []


def describe() -> dict[str, object]:
    """Plain data for results files: cpu, isa, cores, torch threads, torch and its ISA level."""
    return {
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def summary() -> str:
    """One line for benchmark output and markdown headers."""
    info = describe()
    isa = "/".join(info["isa"]) or "unknown ISA"  # type: ignore[arg-type]
    return (
        f"{info['cpu']} ({isa}; torch uses {info['torch_cpu_capability']}), "
        f"{info['threads']} threads, torch {info['torch']}"
    )
