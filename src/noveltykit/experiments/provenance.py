"""How a result was made: package versions, git commit, machine."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path

import torch

from ..hardware import native_bf16_cpu
from ..versions import package_versions  # noqa: F401 (recorded with every result)

# For copies of the checkout shipped to another machine, whose .git (if any) may be stale: the commit
# the copy was made from. When set, it is what results record.
ENV_COMMIT = "NOVELTYKIT_GIT_COMMIT"


def git_commit() -> str:
    """The commit of the checkout the package runs from, with '+dirty' for uncommitted changes."""
    if os.environ.get(ENV_COMMIT):
        return os.environ[ENV_COMMIT]
    repo = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), e.g. 'AMD EPYC' or 'Intel(R) Xeon(R) ...'."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    """What speed figures depend on: the CPU, the kernels torch runs on it, threads, the GPU."""
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_model": cpu_model(),
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16_cpu(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            **({"cuda_device": torch.cuda.get_device_name()} if torch.cuda.is_available() else {})}


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, GiB (Linux counts ru_maxrss in KiB): recorded
    with each cell, an upper bound on what that cell needed (earlier cells of the process count)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
