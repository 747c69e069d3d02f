"""bf16 autocast only where it pays: on a CPU without native bf16 it runs many times slower.

`benchmarks/gan_speed.py` measured bf16 autocast against fp32 in one process (docs/benchmarks.md,
"Teacher speed by CPU"): on a CPU without AVX512-BF16 or AMX in use the bf16 passes are emulated,
at 0.05x the fp32 training rate.
So `precision="bf16"` there warns once and trains in fp32; a GPU, or a CPU that has the
instructions (and torch running its AVX-512 kernels), gets bf16 as asked.
"""
from __future__ import annotations

import warnings

import torch

from ..hardware import native_bf16_cpu

_warned = False


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """Whether to autocast to bf16 for `precision` on `device` (warns once when it falls back)."""
    global _warned
    if precision != "bf16":
        return False
    if torch.device(device).type != "cpu" or native_bf16_cpu():
        return True
    if not _warned:
        _warned = True
        warnings.warn(
            "precision='bf16' on a CPU without native bf16 (no AVX512-BF16 or AMX in use; torch kernels: "
            f"{torch.backends.cpu.get_cpu_capability()}): bf16 autocast is emulated there; benchmarks/gan_speed.py "
            "measured it at 0.05x fp32 (10 against 181 training images/s, AVX2 kernels, docs/benchmarks.md), "
            "so this run trains in fp32.",
            RuntimeWarning, stacklevel=3)
    return False
