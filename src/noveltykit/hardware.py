"""What the CPU computes natively: read once from /proc/cpuinfo and torch's kernel choice.

Both the training loop (bf16 autocast) and the feature extractor (bf16 inference) ask it, so it
sits at the bottom of the package, below both.
"""
from __future__ import annotations

from functools import lru_cache

import torch

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_cpu() -> bool:
    """True when this CPU computes bf16 in hardware and torch runs the kernels that use it."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") and bool(NATIVE_BF16_FLAGS & cpu_flags())
