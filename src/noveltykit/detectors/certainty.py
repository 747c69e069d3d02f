"""Classifier certainty (tech report §2.3): a classifier of the normal classes, and novelty where
it is unsure. C(p) = 1 - H(p), H the entropy of the predicted class distribution p in log base
|K| (K the normal classes), so C = 1 for a one-hot p and 0 for a uniform one; score = 1 - C(p).

A plain classifier can be certain about images unlike anything it saw (the report's noise
images); `mc_samples=T` scores with the mean of p over T networks sampled by dropout (MC dropout,
Gal & Ghahramani 2016). The T networks come from seeds derived from `random_state`
(`nets.dropout`), so the same model gives the same scores, whatever the batch.

It needs the labels of the normal training images: under leave-one-out the protocol gives them
(the nine trained digits); for a folder dataset, class subfolders under `train/`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..nets.conv import AllConvNet, ConvClassifier
from ..nets.dropout import sample_networks
from .base import export_not_supported
from .registry import register
from .torch_base import BatchScore, TrainedDetector

ARCHS = ("small", "allconv")
NEEDS_CLASSES = ("certainty needs the class labels of two or more normal classes: the leave-one-out "
                 "protocol (`noveltykit bench --protocol leave-one-out`), or a folder dataset with one "
                 "subfolder per normal class under train/")


def certainty(p: torch.Tensor, traceable: bool = False) -> torch.Tensor:
    """(N, K) class distributions -> (N,) 1 - H(p) / log K. `traceable`: -p log p written out for
    ONNX export (which has no `entr`), log(0) kept finite; equal where p is not subnormal."""
    k = p.shape[1]
    terms = -(p * p.clamp_min(torch.finfo(p.dtype).tiny).log()) if traceable else torch.special.entr(p)
    return 1 - terms.sum(1) / math.log(k)


@register
class CertaintyDetector(TrainedDetector):
    """Uncertainty of a classifier of the normal classes, optionally with MC dropout. Uses `y`."""

    name = "certainty"
    summary = "classifier of the normal classes: novel if unsure"
    uses_labels = True
    classifies = True
    exportable = True  # with mc_samples=0

    def __init__(self, arch: str = "small", width: int = 16, dropout: float = 0.3, mc_samples: int = 0,
                 **base):
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if int(mc_samples) < 0 or int(mc_samples) == 1:
            raise ValueError(f"mc_samples is 0 (one pass, no dropout) or >= 2, got {mc_samples}")
        if int(mc_samples) and not float(dropout):
            raise ValueError("mc_samples needs dropout > 0: without it every sampled network is the same")
        self.arch, self.width, self.dropout, self.mc_samples = arch, int(width), float(dropout), int(mc_samples)
        super().__init__(**base)

    def _fit(self, x, x_val, y=None):
        if y is None or len(np.unique(y)) < 2:
            raise ValueError(NEEDS_CLASSES)
        self.classes_ = np.unique(y)
        super()._fit(x, x_val, np.searchsorted(self.classes_, y))

    def _build(self, shape):
        k = len(self.classes_)
        if self.arch == "allconv":
            return AllConvNet(shape[0], k, self.width, self.dropout)
        return ConvClassifier(shape[0], shape[1], self.width, k, code=8 * self.width, dropout=self.dropout)

    def _loss(self, model, x, generator, y):
        return F.cross_entropy(model(x), y), {}

    def probabilities(self, model, x) -> torch.Tensor:
        """p: one pass without dropout, or the mean over the `mc_samples` sampled networks."""
        if not self.mc_samples:
            return model(x).softmax(1)
        p = 0
        try:
            for t in range(self.mc_samples):
                sample_networks(model, self.random_state * 100_003 + t)
                p = p + model(x).softmax(1)
        finally:
            sample_networks(model, None)
        return p / self.mc_samples

    def _score_batch(self, model, x):
        return 1 - certainty(self.probabilities(model, x))

    def scoring_module(self):
        if self.mc_samples:
            raise export_not_supported(self.name, f"mc_samples={self.mc_samples}: its dropout masks are drawn "
                                                  "per sampled network, which a graph does not; mc_samples=0 exports")
        self._check_fitted()
        return BatchScore(lambda model, x: 1 - certainty(self.probabilities(model, x), traceable=True),
                          self.scorer().cpu().eval())

    def class_log_probabilities(self, x):
        return self._on_scorer(lambda model, xd: self.probabilities(model, xd).clamp_min(1e-30).log(), x)

    def _info(self):
        return {**super()._info(), "classes": self.classes_.tolist()}

    def _load_state(self, tensors, info):
        self.classes_ = np.asarray(info["classes"])
        super()._load_state(tensors, info)
