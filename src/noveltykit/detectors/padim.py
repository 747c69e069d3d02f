"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection
and Localization", ICPR 2021).

    fit      every training image's patch features (`features.PatchMaps`: stages `stages` of a
             frozen EfficientNet-Lite, the deeper resized to the first's grid, concatenated, no
             local averaging), `n_channels` of their channels drawn at random (seeded), then one
             Gaussian per grid position over the training images: its mean and covariance
             S + 0.01 I (S the unbiased sample covariance, the 0.01 the paper's)
    map      each patch's Mahalanobis distance sqrt((f - mean)^T cov^-1 (f - mean)) under its
             position's Gaussian
    score    the largest patch distance

Default stages '2+3+5' on Lite0: the ends of its stride-4, -8 and -16 block groups (24, 40 and 112
channels), the places of the paper's ResNet-18 layer1-3; at 224 px the grid is 56x56, the paper's.
The paper keeps 100 of ResNet-18's 448 channels; `n_channels` 64 of these 176 by default, as the
model holds an inverse covariance per position: 56 * 56 * 64 * 64 floats = 51 MB at 224 px (100
channels: 125 MB). The statistics are summed chunk by chunk in float64, so a fit holds them, never
every training image's features.

ONNX export (`PaDiMScore`): the patch maps (`features.PatchGraph`), the kept channels, each
position's Mahalanobis distance by batched matrix products, the image's largest, one graph.
"""
from __future__ import annotations

import torch
from torch import nn

from .patch_features import PatchDetector
from .registry import register

COV_RIDGE = 0.01  # the paper's regulariser: cov + 0.01 I is invertible with few images


class PaDiMScore(nn.Module):
    """Images -> the largest Mahalanobis distance of a patch under its position's Gaussian."""

    def __init__(self, maps: nn.Module, channels: torch.Tensor, mean: torch.Tensor, inv_cov: torch.Tensor):
        super().__init__()
        self.maps = maps
        self.register_buffer("channels", channels.long().clone())
        self.register_buffer("mean", mean.float().clone())  # (P, d)
        self.register_buffer("inv_cov", inv_cov.float().clone())  # (P, d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.maps(x).index_select(1, self.channels).flatten(2).permute(2, 0, 1)  # (P, N, d)
        delta = f - self.mean[:, None, :]
        m2 = (torch.matmul(delta, self.inv_cov) * delta).sum(2)  # (P, N)
        return m2.clamp_min(0).sqrt().amax(0)


@register
class PaDiMDetector(PatchDetector):
    """PaDiM: Mahalanobis distance of each patch under a Gaussian of its grid position; the
    image's score is the largest (see the module docstring). Ignores `y`."""

    name = "padim"
    summary = "ImageNet patches: a Gaussian per patch position"
    exportable = True

    def __init__(self, n_channels: int = 64, stages: str = "2+3+5", **features):
        """`n_channels`: how many of the concatenated stages' channels a patch keeps, drawn at
        random (seeded by `random_state`); all of them when there are no more."""
        if int(n_channels) < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        self.n_channels = int(n_channels)
        super().__init__(stages=stages, **features)

    def _fit_patches(self, x):
        if len(x) < 2:
            raise ValueError(f"padim: a covariance per position needs at least 2 training images, got {len(x)}")
        dim = self.patch_maps().dim
        g = torch.Generator().manual_seed(self.random_state)
        self.channels_ = torch.randperm(dim, generator=g)[:self.n_channels].sort().values
        total = total_outer = None
        for maps in self.patch_maps().chunks(x):
            f = self._positions(maps).double()  # (n, P, d)
            if total is None:
                self.grid_ = tuple(maps.shape[2:])
                total, total_outer = f.sum(0), torch.einsum("npd,npe->pde", f, f)
            else:
                total += f.sum(0)
                total_outer += torch.einsum("npd,npe->pde", f, f)
        n = len(x)
        mean = total / n
        cov = total_outer.sub_(n * mean[:, :, None] * mean[:, None, :]).div_(n - 1)  # in place: P x d x d
        cov.diagonal(dim1=1, dim2=2).add_(COV_RIDGE)
        self.mean_ = mean.float()
        self.inv_cov_ = torch.linalg.inv(cov).float().contiguous()  # row-major, as a loaded model holds it

    def _positions(self, maps: torch.Tensor) -> torch.Tensor:
        """(n, C, h, w) -> (n, h * w, d): each position's kept channels."""
        return maps[:, self.channels_].flatten(2).transpose(1, 2)

    def _grid_scores(self, maps):
        h, w = maps.shape[2:]
        out = []
        for f in self._positions(maps):  # image by image: its distances never depend on its batch
            delta = (f - self.mean_)[:, None, :]  # (P, 1, d)
            m2 = torch.bmm(torch.bmm(delta, self.inv_cov_), delta.transpose(1, 2)).view(h, w)
            out.append(m2.clamp_min(0).sqrt())
        return torch.stack(out)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return PaDiMScore(self.patch_maps().graph(tuple(self.input_shape_)), self.channels_, self.mean_, self.inv_cov_)

    def _state(self):
        return {"mean": self.mean_, "inv_cov": self.inv_cov_, "channels": self.channels_}

    def _info_patches(self):
        return {"grid": list(self.grid_)}

    def _load_state_patches(self, tensors, info):
        # copies: a fresh allocation is aligned as at fit, so the products take the same kernels
        self.mean_, self.inv_cov_ = tensors["mean"].float().clone(), tensors["inv_cov"].float().clone()
        self.channels_ = tensors["channels"].long()
        self.grid_ = tuple(info["grid"])
