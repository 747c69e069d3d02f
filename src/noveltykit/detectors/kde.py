"""Gaussian kernel density estimate on pixels; score = -log density. The bandwidth is the one
that maximises the likelihood of the normal-only validation split (never the test split)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import Detector
from .distances import DEFAULT_BLOCK_ELEMS, Flattened, SquaredDistances, flatten, sq_dist_blocks
from .knn import knn_distances
from .registry import register


def gaussian_kde_logpdf(queries: torch.Tensor, refs: torch.Tensor, bandwidths: torch.Tensor,
                        max_block_elems: int = DEFAULT_BLOCK_ELEMS) -> torch.Tensor:
    """(N_q, len(bandwidths)) log densities of an isotropic Gaussian KDE, one column per bandwidth.

    Distances are taken in float64: a small bandwidth magnifies their rounding error.
    """
    queries, refs = queries.double(), refs.double()
    n_r, dim = refs.shape
    inv_2h2 = 1.0 / (2.0 * bandwidths.double() ** 2)
    out = torch.empty(len(queries), len(bandwidths), dtype=torch.float64)
    for qs, blocks in sq_dist_blocks(queries, refs, max_block_elems):
        acc = None  # running logsumexp over reference blocks, per bandwidth
        for _, d2 in blocks:
            # one bandwidth at a time: a (queries, refs, bandwidths) tensor would break the budget
            lse = torch.stack([torch.logsumexp(-d2 * c, dim=1) for c in inv_2h2], dim=1)
            acc = lse if acc is None else torch.logaddexp(acc, lse)
        out[qs] = acc
    return out - kde_log_norm(n_r, dim, bandwidths)


def kde_log_norm(n_refs: int, dim: int, bandwidths: torch.Tensor) -> torch.Tensor:
    """log(n_refs (2 pi h^2)^(dim / 2)) per bandwidth h: the KDE's normalisation."""
    return math.log(n_refs) + 0.5 * dim * torch.log(2 * math.pi * bandwidths.double() ** 2)


class KDENegLogDensity(nn.Module):
    """Rows (N, D) -> (N,) -log density of the Gaussian KDE on `refs` with one bandwidth, float64
    (`gaussian_kde_logpdf` as one graph: every distance at once)."""

    def __init__(self, refs: torch.Tensor, bandwidth: float):
        super().__init__()
        h = torch.tensor([bandwidth], dtype=torch.float64)
        self.distances = SquaredDistances(refs.double())
        self.inv_2h2 = float(1.0 / (2.0 * h[0] ** 2))
        self.log_norm = float(kde_log_norm(len(refs), refs.shape[1], h)[0])

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return -(torch.logsumexp(-self.distances(rows) * self.inv_2h2, dim=1) - self.log_norm)


@register
class KDEDetector(Detector):
    """Negative log density of a Gaussian KDE, bandwidth by validation likelihood. Ignores `y`."""

    name = "kde"
    summary = "pixels: Gaussian kernel density"
    exportable = True

    def __init__(self, bandwidth: float | None = None, n_bandwidths: int = 15,
                 max_block_elems: int = DEFAULT_BLOCK_ELEMS, **base):
        super().__init__(**base)
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        self.bandwidth, self.n_bandwidths = bandwidth, int(n_bandwidths)
        self.max_block_elems = int(max_block_elems)

    def candidate_bandwidths(self, x: torch.Tensor, x_val: torch.Tensor) -> torch.Tensor:
        """A log grid around the scale of nearest-neighbour distances per dimension."""
        nn = knn_distances(x_val, x, 1, self.max_block_elems)[:, 0]
        scale = float(nn.median()) / math.sqrt(x.shape[1]) or 1e-3
        return torch.logspace(math.log10(scale / 4), math.log10(scale * 16), self.n_bandwidths,
                              dtype=torch.float64)

    def _fit(self, x, x_val, y=None):
        self.memory_ = flatten(x)
        if self.bandwidth is not None:
            self.bandwidth_ = float(self.bandwidth)
            return
        grid = self.candidate_bandwidths(self.memory_, flatten(x_val))
        val_ll = gaussian_kde_logpdf(flatten(x_val), self.memory_, grid, self.max_block_elems).mean(0)
        self.bandwidth_ = float(grid[int(val_ll.argmax())])
        self.bandwidth_grid_ = grid.tolist()
        self.validation_loglik_ = val_ll.tolist()

    def _score(self, x) -> np.ndarray:
        h = torch.tensor([self.bandwidth_], dtype=torch.float64)
        return (-gaussian_kde_logpdf(flatten(x), self.memory_, h, self.max_block_elems)[:, 0]).numpy()

    def vector_module(self) -> nn.Module:
        """The score of rows (N, D), the images flattened, as one module (`DetectorHead` uses it)."""
        return KDENegLogDensity(self.memory_, self.bandwidth_)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return Flattened(self.vector_module())

    def _state(self):
        return {"memory": self.memory_, "bandwidth": torch.tensor([self.bandwidth_], dtype=torch.float64)}

    def _load_state(self, tensors, info):
        self.memory_ = tensors["memory"]
        self.bandwidth_ = float(tensors["bandwidth"][0])
