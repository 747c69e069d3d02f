"""The versions of what a result or a saved model was made with: recorded beside both, one list."""
from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("noveltykit", "torch", "numpy", "scikit-learn", "scipy", "pillow", "safetensors")


def package_versions() -> dict[str, str]:
    """Python, the processor architecture and each package's installed version."""
    out = {"python": platform.python_version(), "platform": platform.machine()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
