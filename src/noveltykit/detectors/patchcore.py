"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

    fit      every training image's patch features (`features.PatchMaps`: stages `stages` of a
             frozen EfficientNet-Lite, each averaged over 3x3 patches, the deeper resized to the
             finer grid, concatenated; `feature_dim` optionally averages adjacent channels down
             to that many, as PatchCore's adaptive average pooling does), then a memory bank:
             the `coreset_ratio` of them chosen by greedy k-centre (`greedy_coreset`)
    map      each patch's Euclidean distance to its nearest bank entry
    score    the largest patch distance; `reweight=True`: times the paper's weight (Eq. 7)
             1 - softmax(d)[m*], d the distances from that patch to its nearest bank entry m*
             and to m*'s REWEIGHT_NEIGHBOURS - 1 nearest bank entries: a patch whose nearest
             normal lies in a sparse part of the bank counts for more

Default stages '3+5' on Lite0: the ends of its stride-8 and stride-16 block groups (40 and 112
channels), the places of the paper's WideResNet-50 layer2 and layer3 (the last blocks at stride 8
and 16): mid-level features, local enough to place a defect and not yet ImageNet's classes.
At 224 px the grid is 28x28, the paper's.

ONNX export (`PatchCoreScore`, reweight=False): the patch maps (`features.PatchGraph`), every
patch's squared distance to every bank entry by one matrix product, the nearest's exact distance,
the image's largest. That holds (N, patches, bank) floats at once: the graph says how many images a
call should hold (`images_per_call`, from SCORE_FLOATS), which the export keeps as metadata.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .base import export_not_supported
from .patch_features import PatchDetector
from .registry import register

PROJECTION_DIM = 128  # the coreset's distances: a random projection to this many dimensions (the paper's)
REWEIGHT_NEIGHBOURS = 9  # m* and its 8 nearest bank entries (anomalib's default for Eq. 7)
BANK_CHUNK = 8192  # bank entries per distance block: an image's block stays 784 x 8192 floats
# the coreset's lazy loop: points a block, centres a matrix product (2 MB of distances at once);
# 256 was the fastest of 128-4096 on 141,120 patches
BLOCK, CENTRE_CHUNK = 256, 2048
SCORE_FLOATS = 1 << 26  # the exported graph's patch-to-bank distances: 256 MB a call at most


def greedy_coreset(points: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Indices (k,) of `points` (N, D) chosen by greedy k-centre: a seeded random first point,
    then again and again the point farthest from every one chosen so far, so the chosen ones
    cover all of them within the smallest radius this greedy finds (2x the optimum at worst).

    Distances are Euclidean in a seeded Gaussian random projection to PROJECTION_DIM dimensions
    (as the paper; points of at most that many dimensions are used as they are: a projection
    would save nothing). Memory O(N): each point's squared distance to its nearest chosen point,
    never an N x N or N x k matrix.

    The loop is lazy, by blocks of BLOCK points: a block's stored distances are upper bounds
    (centres chosen since its last update can only lower them), and the block with the largest
    bound is brought up to date against the centres it has not seen, in one matrix product; once
    the largest bound belongs to an up-to-date block, that block's farthest point is the farthest
    of all. The picks are the plain loop's (up to float rounding of ties), but the work runs as
    matrix products instead of a matrix-vector pass over every point per centre, which is bound
    by memory (docs/maps.md times the coreset: `benchmarks/map_speed.py`).
    """
    n = len(points)
    if not 1 <= k <= n:
        raise ValueError(f"coreset of {k} points from {n}: need 1 <= k <= {n}")
    g = torch.Generator().manual_seed(int(seed))
    first = int(torch.randint(n, (1,), generator=g))
    x = points.float()
    if x.shape[1] > PROJECTION_DIM:
        proj = torch.randn(x.shape[1], PROJECTION_DIM, generator=g) / math.sqrt(PROJECTION_DIM)
        x = torch.cat([x[i:i + 65536] @ proj for i in range(0, n, 65536)])
    x = x - x.mean(0)  # smaller norms: less cancellation in |p|^2 - 2 p.c + |c|^2 below
    x_sq = x.pow(2).sum(1)
    centres, c_sq = x.new_empty(k, x.shape[1]), x.new_empty(k)
    centres[0], c_sq[0] = x[first], x_sq[first]
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = first
    nearest = (x - x[first]).pow(2).sum(1)  # squared distance to the nearest chosen point
    nearest[first] = -math.inf
    blocks = [slice(b, min(n, b + BLOCK)) for b in range(0, n, BLOCK)]
    seen = [1] * len(blocks)  # centres each block is up to date with
    bound = torch.stack([nearest[b].max() for b in blocks])
    for t in range(1, k):
        while True:
            j = int(bound.argmax())
            b = blocks[j]
            if seen[j] == t:
                break
            for c in range(seen[j], t, CENTRE_CHUNK):  # a block x chunk of centres at a time
                cs = slice(c, min(t, c + CENTRE_CHUNK))
                d2 = torch.addmm(x_sq[b, None] + c_sq[None, cs], x[b], centres[cs].T, alpha=-2)
                nearest[b] = torch.minimum(nearest[b], d2.amin(1))
            seen[j], bound[j] = t, nearest[b].max()
        i = b.start + int(nearest[b].argmax())
        chosen[t], centres[t], c_sq[t] = i, x[i], x_sq[i]
        nearest[i] = -math.inf  # chosen: never again, even where rounding leaves its distance above 0
    return chosen


def nearest_in_bank(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's (M,) Euclidean distance to its nearest bank entry, and that entry's index.
    The bank is searched in blocks of BANK_CHUNK by |q|^2 - 2 q.b + |b|^2 (memory M x BANK_CHUNK);
    the winner's distance is then computed as |q - b| itself, free of that form's cancellation."""
    q_sq = queries.pow(2).sum(1, keepdim=True)
    best = torch.full((len(queries),), math.inf)
    index = torch.zeros(len(queries), dtype=torch.long)
    for start in range(0, len(bank), BANK_CHUNK):
        block = bank[start:start + BANK_CHUNK]
        d2 = torch.addmm(q_sq + bank_sq[start:start + BANK_CHUNK], queries, block.T, alpha=-2)
        low, at = d2.min(1)
        better = low < best
        best = torch.where(better, low, best)
        index = torch.where(better, at + start, index)
    return (queries - bank[index]).pow(2).sum(1).sqrt(), index


class PatchCoreScore(nn.Module):
    """Images -> the largest distance of a patch to its nearest bank entry (reweight=False), one
    graph; `channel_pool` (dim, feature_dim) averages channels as `adaptive_avg_pool1d` does."""

    def __init__(self, maps: nn.Module, bank: torch.Tensor, channel_pool: torch.Tensor | None, patches: int):
        super().__init__()
        self.maps = maps
        self.register_buffer("bank", bank.detach().float().clone())
        self.register_buffer("bank_sq", self.bank.pow(2).sum(1))
        self.register_buffer("channel_pool", channel_pool)
        self.images_per_call = max(1, SCORE_FLOATS // (patches * len(bank)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.maps(x).flatten(2).transpose(1, 2)  # (N, h * w, dim), row-major as `_patches`
        if self.channel_pool is not None:
            rows = rows @ self.channel_pool
        d2 = (rows.pow(2).sum(2, keepdim=True) + self.bank_sq) - 2 * (rows @ self.bank.T)
        nearest = self.bank[d2.argmin(2)]  # (N, h * w, dim): as `nearest_in_bank`, the winner's own distance
        return (rows - nearest).pow(2).sum(2).sqrt().amax(1)


@register
class PatchCoreDetector(PatchDetector):
    """PatchCore: distance of each patch to a coreset of normal patches; the image's score is the
    largest (see the module docstring). Ignores `y`."""

    name = "patchcore"
    summary = "ImageNet patches: distance to a coreset of normal ones"
    exportable = True  # with reweight=False
    pool = 3  # PatchCore's local aggregation: 3x3 patches

    def __init__(self, coreset_ratio: float = 0.1, reweight: bool = False, feature_dim: int | None = None,
                 stages: str = "3+5", **features):
        """`coreset_ratio`: the share of training patches kept in the bank (1 = all);
        `feature_dim`: None keeps every channel, else each patch's vector is averaged down to this
        many; `reweight`: the paper's re-weighted image score (then not the map's largest value)."""
        if not 0.0 < float(coreset_ratio) <= 1.0:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if feature_dim is not None and int(feature_dim) < 1:
            raise ValueError(f"feature_dim must be >= 1 or None (every channel), got {feature_dim}")
        if not isinstance(reweight, bool):
            raise ValueError(f"reweight must be True or False, got {reweight!r}")
        self.coreset_ratio, self.reweight = float(coreset_ratio), reweight
        self.feature_dim = None if feature_dim is None else int(feature_dim)
        super().__init__(stages=stages, **features)

    def _patches(self, maps: torch.Tensor) -> torch.Tensor:
        """(n, C, h, w) -> (n * h * w, D): one row a patch, image by image, row-major."""
        rows = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
        if self.feature_dim is not None and self.feature_dim < rows.shape[1]:
            rows = F.adaptive_avg_pool1d(rows[:, None], self.feature_dim)[:, 0]
        return rows.contiguous()

    def _fit_patches(self, x):
        grids = []
        rows = []
        for maps in self.patch_maps().chunks(x):
            grids.append(tuple(maps.shape[2:]))
            rows.append(self._patches(maps))
        patches = torch.cat(rows)
        del rows
        k = max(1, round(self.coreset_ratio * len(patches)))
        t0 = time.perf_counter()
        self.bank_ = patches if k >= len(patches) else patches[greedy_coreset(patches, k, self.random_state)]
        self.coreset_seconds_ = time.perf_counter() - t0
        self.n_patches_, self.grid_ = len(patches), grids[0]
        self._bank_sq = self.bank_.pow(2).sum(1)

    def fit_report(self) -> dict:
        """The bank's size and the coreset's seconds (a loaded model: none, it was not fitted here)."""
        if not hasattr(self, "coreset_seconds_"):
            return {}
        return {"n_patches": self.n_patches_, "bank_size": len(self.bank_), "coreset_seconds": self.coreset_seconds_}

    def _grid_scores(self, maps):
        h, w = maps.shape[2:]
        # image by image: an image's distances never depend on which images came with it
        return torch.stack([nearest_in_bank(self._patches(m[None]), self.bank_, self._bank_sq)[0].view(h, w)
                            for m in maps])

    def _score(self, x):
        if not self.reweight:
            return super()._score(x)
        return torch.cat([self._reweighted(maps) for maps in self.patch_maps().chunks(x)]).double().numpy()

    def _reweighted(self, maps: torch.Tensor) -> torch.Tensor:
        """Eq. 7: s* times 1 - exp|m - m*| / sum over m*'s neighbourhood N of exp|m - n|, for the
        image's farthest patch m and its nearest bank entry m*."""
        out = []
        b = min(REWEIGHT_NEIGHBOURS, len(self.bank_))
        for m in maps:
            patches = self._patches(m[None])
            dist, index = nearest_in_bank(patches, self.bank_, self._bank_sq)
            far = int(dist.argmax())
            star = self.bank_[index[far]]
            # m*'s b nearest bank entries, m* itself first (distance 0)
            around = (self.bank_ - star).pow(2).sum(1).topk(b, largest=False).indices
            to_around = (self.bank_[around] - patches[far]).pow(2).sum(1).sqrt()
            out.append((1 - torch.softmax(to_around, 0)[0]) * dist[far])
        return torch.stack(out)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        if self.reweight:
            raise export_not_supported(self.name, "reweight=True looks up the bank around each image's farthest "
                                                  "patch, which is not written as a graph; reweight=False exports")
        maps = self.patch_maps()
        dim = maps.dim
        pool = None
        if self.feature_dim is not None and self.feature_dim < dim:
            pool = F.adaptive_avg_pool1d(torch.eye(dim)[:, None], self.feature_dim)[:, 0].contiguous()
        return PatchCoreScore(maps.graph(tuple(self.input_shape_)), self.bank_, pool, self.grid_[0] * self.grid_[1])

    def _state(self):
        return {"bank": self.bank_}

    def _info_patches(self):
        return {"n_patches": self.n_patches_, "grid": list(self.grid_), "bank_size": len(self.bank_)}

    def _load_state_patches(self, tensors, info):
        self.bank_ = tensors["bank"].float().clone()  # aligned as at fit: the same kernels, the same bits
        self.n_patches_, self.grid_ = int(info["n_patches"]), tuple(info["grid"])
        self._bank_sq = self.bank_.pow(2).sum(1)
