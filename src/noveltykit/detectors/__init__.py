"""Detectors under one contract (see `base`). Importing a family's module registers it."""
from .base import Detector, NotFittedError, as_image_tensor
from .registry import ModelFileError, available, load, make, register
from . import autoencoders, bayes_factor, certainty, deep_svdd, gan, kde, kdgan, knn, ocsvm, pca, pretrained, selfsup, vae  # noqa: F401  (importing registers them)

__all__ = ["Detector", "ModelFileError", "NotFittedError", "as_image_tensor", "available", "load", "make", "register"]
