"""k-nearest-neighbour distance (tech report §2.1): remember every normal image; an image is as
novel as it is far from its k nearest normal neighbours. Exact and memory bounded. Exports to ONNX:
the normal images a constant, the distances one matrix product, a top-k (`KNNScore`)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import Detector
from .distances import DEFAULT_BLOCK_ELEMS, Flattened, NearestDistances, flatten, sq_dist_blocks
from .registry import register

AGGREGATES = ("mean", "sum", "max")


def knn_distances(queries: torch.Tensor, refs: torch.Tensor, k: int,
                  max_block_elems: int = DEFAULT_BLOCK_ELEMS) -> torch.Tensor:
    """(N_q, k) Euclidean distances to the k nearest references, ascending."""
    out = torch.empty(len(queries), k)
    for qs, blocks in sq_dist_blocks(queries, refs, max_block_elems):
        best = None
        for _, d2 in blocks:  # running top-k over reference blocks
            cand = d2 if best is None else torch.cat([best, d2], dim=1)
            best = cand.topk(min(k, cand.shape[1]), dim=1, largest=False).values
        out[qs] = best.sqrt()
    return out


def aggregate_distances(d: torch.Tensor, aggregate: str) -> torch.Tensor:
    """(N, k) ascending distances -> (N,): their mean, sum, or the largest (the k-th)."""
    if aggregate == "mean":
        return d.mean(1)
    return d.sum(1) if aggregate == "sum" else d[:, -1]


class KNNScore(nn.Module):
    """Rows (N, D) -> the `aggregate` of their Euclidean distances to the k nearest of `memory`."""

    def __init__(self, memory: torch.Tensor, k: int, aggregate: str):
        super().__init__()
        self.nearest, self.aggregate = NearestDistances(memory, k), aggregate

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return aggregate_distances(self.nearest(rows), self.aggregate)


@register
class KNNDetector(Detector):
    """Mean (or sum, max) Euclidean distance to the k nearest normal images. Ignores `y`."""

    name = "knn"
    summary = "pixels: distance to the k nearest normal images"
    exportable = True

    def __init__(self, k: int = 5, aggregate: str = "mean", max_block_elems: int = DEFAULT_BLOCK_ELEMS,
                 **base):
        super().__init__(**base)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        self.k, self.aggregate, self.max_block_elems = int(k), aggregate, int(max_block_elems)

    def _fit(self, x, x_val, y=None):
        if len(x) < self.k:
            raise ValueError(f"knn: k={self.k} but only {len(x)} training images")
        self.memory_ = flatten(x)

    def _score(self, x) -> np.ndarray:
        d = knn_distances(flatten(x), self.memory_, self.k, self.max_block_elems)
        return aggregate_distances(d, self.aggregate).numpy()

    def vector_module(self) -> nn.Module:
        """The score of rows (N, D), the images flattened, as one module (`DetectorHead` uses it)."""
        return KNNScore(self.memory_, self.k, self.aggregate)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return Flattened(self.vector_module())

    def _state(self):
        return {"memory": self.memory_}

    def _load_state(self, tensors, info):
        self.memory_ = tensors["memory"]
