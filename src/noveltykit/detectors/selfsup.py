"""Contextual self-supervision (tech report §2.5; GEOM, Golan & El-Yaniv 2018; Hendrycks et al.
2019): a classifier learns which transformation of a set (`data.geometric`) was applied to a
normal image. On a novel image it is less sure which one it sees.

Training: each image of a batch gets a seeded random transformation of the set; the loss is the
cross-entropy of the true transformation (summed over the heads of `rot4-trans`). An epoch sees
every training image once, under one transformation. `shift_augment=s` first shifts each training
image by its own seeded (dy, dx) in [-s, s] px with reflect fill (a data augmentation, as the
random crops of Hendrycks et al. 2019); scoring never shifts.

Scores (eval mode, every image under every transformation of the set, batched):
- `score="nll"`: the sum over transformations (and heads) of -log p(true transformation).
- `score="dirichlet"`: GEOM's: for each transformation (and head), a Dirichlet fitted by maximum
  likelihood to the training images' softmax outputs under it (probabilities clipped to
  [`clip`, 1 - `clip`] and renormalised); score = -sum of the log densities.
The network is a wide residual network (`nets.wrn`); GEOM and GOAD use depth 10, widen 4.
Selection and early stopping read the training loss on the normal validation images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import digamma, polygamma
from torch import nn

from ..data.geometric import SETS, apply_each, transformation_set
from ..data.transforms import random_translations
from ..nets.wrn import WideResNet
from .base import export_not_supported
from .registry import register
from .torch_base import TrainedDetector

SCORES = ("nll", "dirichlet")


class SelfSupModel(nn.Module):
    """The classifier and, for `score=dirichlet`, one Dirichlet per (transformation, head): its
    concentration vector, the heads' classes side by side (a buffer, saved with the weights)."""

    def __init__(self, channels: int, heads: tuple[int, ...], n_transforms: int, depth: int, widen: int,
                 dropout: float):
        super().__init__()
        self.net = WideResNet(channels, heads, depth, widen, dropout)
        self.register_buffer("alpha", torch.ones(n_transforms, sum(heads)))

    def forward(self, x):
        return self.net(x)


def dirichlet_mle(log_p: np.ndarray, iters: int = 200, tol: float = 1e-9) -> np.ndarray:
    """Maximum-likelihood Dirichlet concentration for (N, K) log-probabilities: Minka's (2000)
    fixed point psi(a_k) = psi(sum a) + mean log p_k, inverted by Newton steps."""
    mean_log = log_p.mean(0)
    p = np.exp(log_p)
    m, m2 = p.mean(0), (p ** 2).mean(0)
    s = np.median((m - m2) / np.maximum(m2 - m ** 2, 1e-12))  # a moment-matched start
    alpha = np.maximum(m * max(s, 1e-3), 1e-3)
    for _ in range(iters):
        y = digamma(alpha.sum()) + mean_log
        x = np.where(y >= -2.22, np.exp(y) + 0.5, -1 / (y - digamma(1)))  # inverse digamma, Minka
        for _ in range(5):
            x = x - (digamma(x) - y) / polygamma(1, x)
        if np.abs(x - alpha).max() < tol:
            return x
        alpha = x
    return alpha


@register
class SelfSupervisedDetector(TrainedDetector):
    """Which transformation was applied: a classifier's doubt on it. Ignores `y`."""

    name = "selfsup"
    summary = "which transform was applied? unsure on novel images"
    exportable = True  # with score="nll"
    # Scoring runs the net T times a batch: 128 images a pass fit the CPU's caches better than 512
    # (WRN-10-1, one AMD EPYC thread: x1.5-1.8; benchmarks/wrn_layout_speed.py).
    score_batch_size = 128

    def __init__(self, transforms: str = "rot4", depth: int = 10, widen: int = 1, dropout: float = 0.0,
                 score: str = "nll", clip: float = 1e-6, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0, shift_augment: int = 0, **base):
        if transforms not in SETS:
            raise ValueError(f"transforms must be one of {SETS}, got {transforms!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if not 0 < float(clip) < 0.5:
            raise ValueError(f"clip must be in (0, 0.5), got {clip}")
        self.transforms, self.depth, self.widen, self.dropout = transforms, int(depth), int(widen), float(dropout)
        self.score, self.clip = score, float(clip)
        self.shift_augment = int(shift_augment)
        if self.shift_augment < 0:
            raise ValueError(f"shift_augment must be >= 0 px, got {shift_augment}")
        super().__init__(batch_size=batch_size, lr=lr, weight_decay=weight_decay, **base)

    def tset(self, size: int):
        return transformation_set(self.transforms, size)

    def _build(self, shape):
        ts = self.tset(shape[1])
        return SelfSupModel(shape[0], ts.heads, len(ts), self.depth, self.widen, self.dropout)

    def transformation_loss(self, model, x, index, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the true transformation (summed over heads), image i under index[i]."""
        ts = self.tset(x.shape[-1])
        labels = ts.labels[index].to(x.device)
        logits = model(apply_each(ts, x, index))
        return sum(F.cross_entropy(z, labels[:, h], reduction=reduction) for h, z in enumerate(logits))

    def training_batch(self, x, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as training sees it (shifted when `shift_augment`), and each image's
        transformation index, both drawn from `generator`."""
        index = torch.randint(len(self.tset(x.shape[-1])), (len(x),), generator=generator)
        if self.shift_augment:
            if 2 * self.shift_augment >= x.shape[-1]:
                raise ValueError(f"shift_augment={self.shift_augment} px is not under half the image side "
                                 f"({x.shape[-1]} px)")
            x = random_translations(x, generator, self.shift_augment, fill="reflect")
        return x, index

    def _loss(self, model, x, generator):
        x, index = self.training_batch(x, generator)
        return self.transformation_loss(model, x, index), {}

    def log_probs(self, model, x) -> torch.Tensor:
        """(N, T, sum heads) log-softmax of each head, x under each of the T transformations."""
        ts = self.tset(x.shape[-1])
        return torch.stack([torch.cat([z.log_softmax(1) for z in model(t.apply(x))], 1)
                            for t in ts.transforms], 1)

    def nll(self, model, x) -> torch.Tensor:
        ts = self.tset(x.shape[-1])
        lp = self.log_probs(model, x)
        offsets = torch.tensor(np.cumsum((0,) + ts.heads[:-1]), device=x.device)
        true = (ts.labels.to(x.device) + offsets)  # (T, heads): the true class's column
        return -lp.gather(2, true.expand(x.shape[0], -1, -1)).sum((1, 2))  # shape[0]: traced, the batch stays free

    def _clipped(self, lp: torch.Tensor, heads) -> list[torch.Tensor]:
        """Per head: probabilities clipped away from 0 and 1 and renormalised, (N, T, K)."""
        out = []
        for part in torch.split(lp.exp(), heads, dim=2):
            p = part.clamp(self.clip, 1 - self.clip)
            out.append(p / p.sum(2, keepdim=True))
        return out

    def _score_batch(self, model, x):
        if self.score == "nll":
            return self.nll(model, x)
        heads = self.tset(x.shape[-1]).heads
        total = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for p, a in zip(self._clipped(self.log_probs(model, x), heads), torch.split(model.alpha, heads, 1)):
            total -= torch.distributions.Dirichlet(a.double()).log_prob(p.double()).sum(1)
        return total

    def scoring_module(self):
        if self.score != "nll":
            raise export_not_supported(self.name, f"score={self.score!r}: its Dirichlet log-density needs log-gamma, "
                                                  "which ONNX has no operator for; score='nll' exports")
        return super().scoring_module()

    def _val_loss(self, model, x_val):
        """The training loss on normal validation images, each under one fixed transformation
        (image i under the (i mod T)-th): one forward pass an image, not T (geom72: 72)."""
        n_transforms = len(self.tset(x_val.shape[-1]))
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(x_val), self.score_batch_size):
                xb = x_val[i:i + self.score_batch_size]
                total += float(self.transformation_loss(model, xb, torch.arange(i, i + len(xb)) % n_transforms, "sum"))
        return total / len(x_val)

    def _fit(self, x, x_val, y=None):
        super()._fit(x, x_val, y)
        if self.score == "dirichlet":
            self.model_.alpha.copy_(self.fit_dirichlets(self.model_, x))

    @torch.no_grad()
    def fit_dirichlets(self, model, x) -> torch.Tensor:
        """One Dirichlet per (transformation, head), fitted on the training images' outputs."""
        model.eval()
        heads = self.tset(x.shape[-1]).heads
        step = self.score_batch_size
        parts = [self._clipped(self.log_probs(model, x[i:i + step]), heads) for i in range(0, len(x), step)]
        alphas = []
        for h in range(len(heads)):
            p = torch.cat([part[h] for part in parts]).double().log().numpy()  # (N, T, K)
            alphas.append(np.stack([dirichlet_mle(p[:, t]) for t in range(p.shape[1])]))
        return torch.from_numpy(np.concatenate(alphas, 1)).float()
