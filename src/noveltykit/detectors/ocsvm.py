"""One-class SVM with an RBF kernel (scikit-learn's libsvm to fit). Scoring uses the stored
support vectors in torch, so a loaded model needs no pickle and scores in batches."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import OneClassSVM
from torch import nn

from .base import Detector
from .distances import DEFAULT_BLOCK_ELEMS, Flattened, SquaredDistances, flatten, sq_dist_blocks
from .registry import register


class SVMScore(nn.Module):
    """Rows (N, D) -> minus libsvm's RBF decision function, float64, the support vectors a constant."""

    def __init__(self, support_vectors: torch.Tensor, dual_coef: torch.Tensor, intercept: float, gamma: float):
        super().__init__()
        self.distances = SquaredDistances(support_vectors.double())
        self.register_buffer("dual_coef", dual_coef.detach().double().clone())
        self.intercept, self.gamma = float(intercept), float(gamma)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return -(torch.exp(-self.gamma * self.distances(rows)) @ self.dual_coef + self.intercept)


@register
class OCSVMDetector(Detector):
    """RBF one-class SVM on pixels; score = minus the decision function. Ignores `y`."""

    name = "ocsvm"
    summary = "pixels: RBF one-class SVM"
    exportable = True

    def __init__(self, nu: float = 0.1, gamma: float | str = "scale", max_train: int = 10000,
                 cache_mb: int = 1000, **base):
        """`gamma`: a float, or "scale" = 1 / (D * var(X)) as in scikit-learn. libsvm is
        quadratic in N, so at most `max_train` images (a seeded random subset) are used."""
        super().__init__(**base)
        if not 0 < nu <= 1:
            raise ValueError(f"nu must be in (0, 1], got {nu}")
        if isinstance(gamma, str) and gamma != "scale":
            raise ValueError(f"gamma must be a float or 'scale', got {gamma!r}")
        self.nu, self.gamma, self.max_train, self.cache_mb = nu, gamma, int(max_train), int(cache_mb)

    def _fit(self, x, x_val, y=None):
        flat = flatten(x)
        if len(flat) > self.max_train:
            gen = torch.Generator().manual_seed(self.random_state)
            flat = flat[torch.randperm(len(flat), generator=gen)[: self.max_train]]
        data = flat.double().numpy()
        gamma = 1.0 / (data.shape[1] * data.var()) if self.gamma == "scale" else float(self.gamma)
        svm = OneClassSVM(kernel="rbf", nu=self.nu, gamma=gamma, cache_size=self.cache_mb).fit(data)
        self.support_vectors_ = torch.from_numpy(svm.support_vectors_)
        self.dual_coef_ = torch.from_numpy(svm.dual_coef_[0]).double()
        self.intercept_ = float(svm.intercept_[0])
        self.gamma_ = float(gamma)

    def svm_decision(self, x: torch.Tensor) -> np.ndarray:
        """libsvm's decision function (positive = inside the normal region)."""
        # float64: exp(-gamma d^2) magnifies rounding in d^2, which float32 would let vary with
        # how the test images are batched.
        flat, svs = flatten(x).double(), self.support_vectors_.double()
        out = np.empty(len(flat))
        for qs, blocks in sq_dist_blocks(flat, svs, DEFAULT_BLOCK_ELEMS):
            acc = torch.zeros(qs.stop - qs.start, dtype=torch.float64)
            for rs, d2 in blocks:
                acc += torch.exp(-self.gamma_ * d2) @ self.dual_coef_[rs]
            out[qs] = (acc + self.intercept_).numpy()
        return out

    def _score(self, x) -> np.ndarray:
        return -self.svm_decision(x)

    def vector_module(self) -> nn.Module:
        """The score of rows (N, D), the images flattened, as one module (`DetectorHead` uses it)."""
        return SVMScore(self.support_vectors_, self.dual_coef_, self.intercept_, self.gamma_)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return Flattened(self.vector_module())

    def _state(self):
        return {"support_vectors": self.support_vectors_, "dual_coef": self.dual_coef_,
                "intercept_gamma": torch.tensor([self.intercept_, self.gamma_], dtype=torch.float64)}

    def _load_state(self, tensors, info):
        self.support_vectors_, self.dual_coef_ = tensors["support_vectors"], tensors["dual_coef"]
        self.intercept_, self.gamma_ = (float(v) for v in tensors["intercept_gamma"])
