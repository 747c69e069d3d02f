"""Detectors under one contract (see `base`). A family's module registers its detectors when it is
imported; `make`, `load` and `available` import the built-in families as they are needed
(`registry.FAMILIES`), so `import noveltykit.detectors` stays light."""
from .base import Detector, NotFittedError, as_image_tensor
from .registry import ModelFileError, available, detector_class, load, make, register

__all__ = ["Detector", "ModelFileError", "NotFittedError", "as_image_tensor", "available", "detector_class", "load", "make", "register"]
