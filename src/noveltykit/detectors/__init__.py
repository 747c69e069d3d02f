"""Detectors under one contract (see `base`). Importing a family's module registers it."""
from .base import Detector, NotFittedError, as_image_tensor
from .registry import ModelFileError, available, detector_class, load, make, register
from . import (autoencoders, bayes_factor, certainty, deep_svdd, ede_gan, gan_disc, kde, kdgan, knn, ocsvm, pca,  # noqa: F401
               pretrained, selfsup, vae)  # (importing registers them)

__all__ = ["Detector", "ModelFileError", "NotFittedError", "as_image_tensor", "available", "detector_class", "load", "make", "register"]
