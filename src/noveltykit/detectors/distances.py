"""Exact pairwise squared Euclidean distances in memory-bounded blocks.

Never materialises a queries x references matrix larger than `max_block_elems` floats, so kNN and
KDE scale to large training sets at a fixed memory cost.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

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
    ref_sq = refs.pow(2).sum(1)

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


def flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).contiguous()
