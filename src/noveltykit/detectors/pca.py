"""PCA reconstruction error: normal images live near a low-dimensional linear subspace."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import Detector
from .distances import Flattened, flatten
from .registry import register


@register
class PCADetector(Detector):
    """Reconstruction error after PCA keeping a share of the variance. Ignores `y`."""

    name = "pca"
    summary = "pixels: PCA reconstruction error"
    exportable = True

    def __init__(self, n_components: int | float = 0.9, **base):
        """`n_components`: an int count, or a float in (0, 1) = fraction of variance to keep."""
        super().__init__(**base)
        if isinstance(n_components, float) and not 0 < n_components < 1:
            raise ValueError(f"a float n_components is a variance fraction in (0, 1), got {n_components}")
        if isinstance(n_components, int) and n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components

    def _fit(self, x, x_val, y=None):
        flat = flatten(x).double()
        self.mean_, evals, evecs = principal_components(flat)
        if isinstance(self.n_components, float):
            ratio = evals.cumsum(0) / evals.sum()
            n = int(torch.searchsorted(ratio, torch.tensor(self.n_components, dtype=ratio.dtype))) + 1
        else:
            n = self.n_components
        n = min(n, len(flat) - 1, flat.shape[1]) if len(flat) > 1 else 1
        self.components_ = evecs[:, :n].T.contiguous()  # (n, D)

    def _score(self, x) -> np.ndarray:
        return pca_error(flatten(x), self.mean_, self.components_).numpy()

    def vector_module(self) -> nn.Module:
        """The score of rows (N, D), the images flattened, as one module (`DetectorHead` uses it)."""
        return PCAError(self.mean_, self.components_)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return Flattened(self.vector_module())

    def _state(self):
        return {"mean": self.mean_, "components": self.components_}

    def _load_state(self, tensors, info):
        self.mean_, self.components_ = tensors["mean"], tensors["components"]


def pca_error(rows: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """(N,) squared distance of each row to the affine subspace mean + span(components), float64."""
    centred = rows.double() - mean
    recon = centred @ components.T @ components
    return (centred - recon).pow(2).sum(1)


class PCAError(nn.Module):
    """`pca_error` with the mean and components as constants: rows (N, D) -> (N,) float64."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().double().clone())
        self.register_buffer("components", components.detach().double().clone())

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return pca_error(rows, self.mean, self.components)


def principal_components(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, D) float64 -> mean (D,), variances (descending) and their directions (D, r) as columns."""
    mean = flat.mean(0)
    centred = flat - mean
    dof = max(1, len(flat) - 1)
    if len(flat) < flat.shape[1]:
        # fewer images than pixels: the SVD of the N x D data gives the same components and
        # variances without the D x D eigenproblem (seconds for 3 x 32 x 32 on one core)
        _, sing, vt = torch.linalg.svd(centred, full_matrices=False)
        return mean, sing.pow(2) / dof, vt.T
    # the eigen-decomposition of the D x D covariance (the documented results' path)
    evals, evecs = torch.linalg.eigh(centred.T @ centred / dof)
    return mean, evals.flip(0).clamp(min=0), evecs.flip(1)
