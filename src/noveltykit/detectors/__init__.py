"""Detectors under one contract (see `base`). Importing a family's module registers it."""
from .base import Detector, NotFittedError, as_image_tensor
from .registry import ModelFileError, available, load, make, register
from . import (autoencoders, bayes_factor, certainty, deep_svdd, gan, gan_disc, kde, kdgan, knn, ocsvm, pca,  # noqa: F401
               pretrained, selfsup, vae)  # (importing registers them)

__all__ = ["Detector", "ModelFileError", "NotFittedError", "as_image_tensor", "available", "load", "make", "register"]
