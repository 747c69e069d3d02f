"""Novelty scores on feature vectors (N, D), higher = more novel: the heads that pretrained-feature
detectors put on a frozen network. All arithmetic is float64 (cosine distances of near neighbours
and Mahalanobis forms lose their digits in float32).

    KNNHead       mean distance to the k nearest normal vectors, cosine or Euclidean
    GaussianHead  squared Mahalanobis distance under one Gaussian, shrinkage covariance
    DetectorHead  any registered detector that only flattens its input (ocsvm, knn, kde, pca)

Each head's `module()` is its score as one torch module on float32 (N, D) features, float64
inside as here: what a feature detector's ONNX graph ends with (`Detector.scoring_module`).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import ledoit_wolf
from torch import nn

from .base import ExportNotSupported
from .distances import NearestDistances
from .knn import knn_distances
from .registry import make

KNN_METRICS = ("cosine", "euclidean")
# Registered detectors whose _fit/_score only flatten their input, so vectors are images to them.
VECTOR_READY = ("knn", "kde", "ocsvm", "pca")


class VectorHead:
    """fit(f, f_val) / score(f) / state() / load_state(tensors, info) / info(); module()."""

    def fit(self, f: torch.Tensor, f_val: torch.Tensor) -> None:
        raise NotImplementedError

    def score(self, f: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        raise NotImplementedError

    def info(self) -> dict:
        return {}

    def module(self) -> nn.Module:
        """`score` as one module: float32 features (N, D) -> (N,) scores (ONNX export)."""
        raise ExportNotSupported(f"its head ({type(self).__name__}) is not written as one graph")


class KNNHead(VectorHead):
    """Mean over the k nearest of 1 - cos (cosine) or of the Euclidean distance."""

    def __init__(self, k: int = 5, metric: str = "cosine"):
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if metric not in KNN_METRICS:
            raise ValueError(f"metric must be one of {KNN_METRICS}, got {metric!r}")
        self.k, self.metric = int(k), metric

    def _prepare(self, f: torch.Tensor) -> torch.Tensor:
        f = f.double()
        return torch.nn.functional.normalize(f, dim=1) if self.metric == "cosine" else f

    def fit(self, f, f_val):
        if len(f) < self.k:
            raise ValueError(f"k={self.k} but only {len(f)} training images")
        self.features_ = f  # saved as given (float32 features: half the size of float64)
        self.memory_ = self._prepare(f)

    def score(self, f) -> np.ndarray:
        d = knn_distances(self._prepare(f), self.memory_, self.k).double()
        if self.metric == "cosine":
            d = d.pow(2) / 2  # unit vectors: |a - b|^2 = 2 - 2 cos
        return d.mean(1).numpy()

    def module(self) -> nn.Module:
        return KNNHeadScore(self.memory_, self.k, self.metric)

    def state(self):
        return {"features": self.features_}

    def load_state(self, tensors, info):
        self.features_ = tensors["features"]
        self.memory_ = self._prepare(self.features_)


class GaussianHead(VectorHead):
    """Squared Mahalanobis distance to the normal mean. Covariance: shrunk towards a scaled
    identity, (1 - s) S + s (tr S / D) I, with s by Ledoit-Wolf (`shrinkage=None`) or given."""

    def __init__(self, shrinkage: float | None = None):
        if shrinkage is not None and not 0.0 <= float(shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1] or None (Ledoit-Wolf), got {shrinkage}")
        self.shrinkage = None if shrinkage is None else float(shrinkage)

    def fit(self, f, f_val):
        if len(f) < 2:
            raise ValueError(f"a covariance needs at least 2 training images, got {len(f)}")
        data = f.double().numpy()
        if self.shrinkage is None:
            cov, shrinkage = ledoit_wolf(data)
        else:
            emp = np.cov(data, rowvar=False, bias=True).reshape(data.shape[1], data.shape[1])
            mu = np.trace(emp) / len(emp)
            shrinkage = self.shrinkage
            cov = (1 - shrinkage) * emp + shrinkage * mu * np.eye(len(emp))
        self.mean_ = torch.from_numpy(data.mean(0))
        try:
            self.cov_cholesky_ = torch.linalg.cholesky(torch.from_numpy(cov))
        except torch.linalg.LinAlgError:
            raise ValueError("covariance is singular (constant features, or shrinkage=0 with fewer "
                             "images than dimensions); use shrinkage=None (Ledoit-Wolf) or > 0") from None
        self.shrinkage_ = float(shrinkage)

    def score(self, f) -> np.ndarray:
        centred = (f.double() - self.mean_).T  # (D, N)
        z = torch.linalg.solve_triangular(self.cov_cholesky_, centred, upper=False)
        return z.pow(2).sum(0).numpy()  # (x - m)^T C^-1 (x - m) = |L^-1 (x - m)|^2

    def module(self) -> nn.Module:
        return MahalanobisScore(self.mean_, self.cov_cholesky_)

    def state(self):
        return {"mean": self.mean_, "cov_cholesky": self.cov_cholesky_}

    def load_state(self, tensors, info):
        self.mean_, self.cov_cholesky_ = tensors["mean"].double(), tensors["cov_cholesky"].double()
        self.shrinkage_ = info.get("shrinkage_")

    def info(self) -> dict:
        return {"shrinkage_": self.shrinkage_}


class DetectorHead(VectorHead):
    """A registered detector used on vectors: its own fit/score/state code, not a copy of it."""

    def __init__(self, name: str, **params):
        if name not in VECTOR_READY:
            raise ValueError(f"{name!r} cannot score feature vectors; use one of {VECTOR_READY}")
        self.detector = make(name, **params)

    def fit(self, f, f_val):
        self.detector._fit(f, f_val)

    def score(self, f) -> np.ndarray:
        return np.asarray(self.detector._score(f), np.float64)

    def module(self) -> nn.Module:
        return self.detector.vector_module()

    def state(self):
        return self.detector._state()

    def load_state(self, tensors, info):
        self.detector._load_state(tensors, info)

    def info(self) -> dict:
        return self.detector._info()


class KNNHeadScore(nn.Module):
    """`KNNHead.score` as one graph: the normal vectors (unit-norm for cosine) a float64 constant."""

    def __init__(self, memory: torch.Tensor, k: int, metric: str):
        super().__init__()
        self.nearest, self.cosine = NearestDistances(memory.double(), k), metric == "cosine"

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = f.double()
        if self.cosine:
            f = torch.nn.functional.normalize(f, dim=1)
        d = self.nearest(f)
        return (d.pow(2) / 2 if self.cosine else d).mean(1)


class MahalanobisScore(nn.Module):
    """`GaussianHead.score` as one graph: |L^-1 (f - mean)|^2 with L^-1 a float64 constant (the
    triangular solve done once, here)."""

    def __init__(self, mean: torch.Tensor, cov_cholesky: torch.Tensor):
        super().__init__()
        eye = torch.eye(len(cov_cholesky), dtype=torch.float64)
        self.register_buffer("mean", mean.detach().double().clone())
        self.register_buffer("inv_cholesky_t", torch.linalg.solve_triangular(
            cov_cholesky.double(), eye, upper=False).T.contiguous())

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return ((f.double() - self.mean) @ self.inv_cholesky_t).pow(2).sum(1)
