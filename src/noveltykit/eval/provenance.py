"""How a result was made: package versions, git commit, machine."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

# For copies of the checkout shipped to another machine, whose .git (if any) may be stale: the commit
# the copy was made from. When set, it is what results record.
ENV_COMMIT = "NOVELTYKIT_GIT_COMMIT"
PACKAGES = ("noveltykit", "torch", "numpy", "scikit-learn", "scipy", "pillow", "safetensors")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


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


def machine() -> dict[str, object]:
    return {"platform": platform.platform(), "processor": platform.machine(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            **({"cuda_device": torch.cuda.get_device_name()} if torch.cuda.is_available() else {})}
