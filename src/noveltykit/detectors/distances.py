"""Exact pairwise squared Euclidean distances in memory-bounded blocks.

Never materialises a queries x references matrix larger than `max_block_elems` floats, so kNN and
KDE scale to large training sets at a fixed memory cost.

For ONNX export (`Detector.scoring_module`) the same arithmetic as modules: `SquaredDistances`
(the references a constant, one matrix product), `NearestDistances` (its k smallest, by top-k),
`Flattened` (images to rows in front of a module on rows).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

DEFAULT_BLOCK_ELEMS = 1 << 24  # 16M floats = 64 MiB per distance block


def sq_dist_blocks(queries: torch.Tensor, refs: torch.Tensor, max_block_elems: int = DEFAULT_BLOCK_ELEMS
                   ) -> Iterator[tuple[slice, Iterator[tuple[slice, torch.Tensor]]]]:
    """Yield (query slice, inner iterator of (reference slice, squared distances block)).

    Queries and references are (N, D) float tensors. The caller reduces each query block over the
    reference blocks (a running top-k, a running logsumexp) before the next query block starts.
    """
    if max_block_elems < 1:
        raise ValueError("max_block_elems must be >= 1")
    n_q, n_r = len(queries), len(refs)
    ref_block = min(n_r, max_block_elems)
    query_block = max(1, max_block_elems // ref_block)
    ref_sq = squared_norms(refs)

    def inner(q: torch.Tensor, q_sq: torch.Tensor):
        for r0 in range(0, n_r, ref_block):
            r = slice(r0, min(r0 + ref_block, n_r))
            # |q|^2 + |r|^2 - 2 q.r ; clamp the small negatives that rounding leaves.
            d2 = torch.addmm(q_sq[:, None] + ref_sq[None, r], q, refs[r].T, alpha=-2.0)
            yield r, d2.clamp_(min=0.0)

    for q0 in range(0, n_q, query_block):
        qs = slice(q0, min(q0 + query_block, n_q))
        q = queries[qs]
        yield qs, inner(q, q.pow(2).sum(1))


def squared_norms(refs: torch.Tensor) -> torch.Tensor:
    """|r|^2 of each row of `refs`, kept on the tensor and computed again only if it is changed in
    place: a served detector scores one image at a time against the same thousands of rows, and
    recomputing them was a large share of such a call (feat-knn on 5,400 training images)."""
    try:
        version = refs._version
    except RuntimeError:  # an inference-mode tensor keeps no version: nothing kept
        return refs.pow(2).sum(1)
    kept = getattr(refs, "_noveltykit_norms", None)
    if kept is not None and kept[0] == version:
        return kept[1]
    norms = refs.pow(2).sum(1)
    refs._noveltykit_norms = (version, norms)
    return norms


def flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).contiguous()


class SquaredDistances(nn.Module):
    """(N, D) rows -> (N, R) squared Euclidean distances to the R rows of `refs` (a constant of the
    module), |q|^2 + |r|^2 - 2 q.r clamped at 0 as `sq_dist_blocks` computes them, in one product
    (the whole N x R matrix: scoring a graph holds it), in the references' dtype."""

    def __init__(self, refs: torch.Tensor):
        super().__init__()
        self.register_buffer("refs", refs.detach().clone())
        self.register_buffer("refs_sq", self.refs.pow(2).sum(1))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        q = q.to(self.refs.dtype)
        d2 = (q.pow(2).sum(1, keepdim=True) + self.refs_sq[None]) - 2 * (q @ self.refs.T)
        return d2.clamp(min=0.0)


class NearestDistances(nn.Module):
    """(N, D) rows -> (N, k) Euclidean distances to the k nearest rows of `refs`, ascending
    (`knn.knn_distances` as one graph: the references a constant, a matrix product, a top-k)."""

    def __init__(self, refs: torch.Tensor, k: int):
        super().__init__()
        if not 1 <= k <= len(refs):
            raise ValueError(f"k={k} nearest of {len(refs)} references")
        self.distances, self.k = SquaredDistances(refs), int(k)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.distances(q).topk(self.k, dim=1, largest=False).values.sqrt()


class Flattened(nn.Module):
    """Images (N, C, H, W) -> rows (N, C*H*W) -> `rows`, the module that scores rows."""

    def __init__(self, rows: nn.Module):
        super().__init__()
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows(x.flatten(1))
