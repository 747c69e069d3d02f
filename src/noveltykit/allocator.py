"""glibc's allocator, told to keep the memory it got: without it, every large tensor a forward pass
frees goes back to the kernel and the next one faults its pages in again (about a million minor
page faults, and more system time than compute, when scoring 2,000 images with a feature
extractor). The settings are those of the environment variables
MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=536870912,
applied in the process with `mallopt`, so no command needs them set. Elsewhere than glibc: nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

OFF = "NOVELTYKIT_MALLOPT"  # "0": leave glibc's defaults (benchmarks/allocator_effect.py compares)
# mallopt's parameter numbers (malloc.h) and their values; an environment variable set by the user wins
SETTINGS = {"MALLOC_TRIM_THRESHOLD_": (-1, 2**31 - 1),  # M_TRIM_THRESHOLD: never give the heap's top back
            "MALLOC_TOP_PAD_": (-2, 512 << 20),  # M_TOP_PAD: grow the heap 512 MiB at a time
            "MALLOC_MMAP_THRESHOLD_": (-3, 32 << 20)}  # M_MMAP_THRESHOLD: blocks under 32 MiB from the heap


def keep_freed_memory() -> dict[str, bool]:
    """Apply SETTINGS with glibc's mallopt (each unless its environment variable is set); returns
    which were applied. A no-op returning {} where the C library is not glibc."""
    if os.environ.get(OFF) == "0":
        return {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return {env: bool(mallopt(param, value)) for env, (param, value) in SETTINGS.items() if env not in os.environ}
