"""Dropout that can also sample one network of a Monte Carlo dropout ensemble (Gal & Ghahramani
2016; tech report §2.3) reproducibly.

In training it is `nn.Dropout`. Outside training it is the identity, unless a mask seed is set
(`sample_networks(model, seed)`): then it drops the same units of every image, drawn from that
seed. One seed is one network of the ensemble, so an image's MC score never depends on which
batch it is in or where, and the same seed gives the same scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SampledDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = float(p)
        self.mask_seed: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.dropout(x, self.p, training=True)
        if self.mask_seed is None or self.p == 0:
            return x
        g = torch.Generator().manual_seed(self.mask_seed)
        keep = (torch.rand(x.shape[1:], generator=g) >= self.p).to(x.device, x.dtype)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def sample_networks(model: nn.Module, seed: int | None) -> int:
    """Give each SampledDropout of `model` its own mask seed derived from `seed` (None: no
    dropout at scoring again); returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, SampledDropout)]
    for i, m in enumerate(layers):
        m.mask_seed = None if seed is None else int(seed) * 1009 + i
    return len(layers)
