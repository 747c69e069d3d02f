"""Pretrained features adapted to the normal class, then scored by kNN to the adapted training
features: the backbone of the `feat-*` detectors, fine-tuned on normal images only.

    feat-msc     Mean-Shifted Contrastive (Reiss & Hoshen, AAAI'23, arXiv 2106.03844): unit-norm
                 features are shifted by the normal centre c; a contrastive loss (temperature
                 0.25) pulls two augmented views of an image together and pushes other images
                 apart, angularly around c, plus their angular centre loss |f - c|^2. Score: mean
                 cosine distance to the k nearest adapted training features (k = 2, theirs).
    feat-panda   PANDA's compactness (Reiss et al., CVPR'21, arXiv 2010.05903): |f - c|^2 to the
                 initial centre of the pooled features. Its collapse (every image mapped to c)
                 needs no novel image to guard against: a fixed, small epoch budget, and
                 optionally an L2 pull of the weights to their pretrained values (`pull`).
                 Score: mean Euclidean distance to the k nearest adapted training features.

What both share, and why:
- the stem and the first `frozen_blocks` blocks (of Lite0's 16, Lite1's and Lite2's 21) keep their
  ImageNet weights, run without gradient (measured 1.7x faster a step with 6 of 16 frozen,
  docs/pretrained.md);
- BatchNorm keeps ImageNet's running statistics throughout: CPU batches of 32 would give poor
  ones, and the features the centre was taken from stay comparable;
- channels-last fp32: the fastest training layout on the CPUs measured (bf16 autocast did not pay);
- images are resized inside the loss, batch by batch, so a training set stays at its stored size;
- training runs through the shared loop (`train.loop`): seeded, resumable, checkpointed; `epochs`,
  `lr` and the rest are fixed before a test is seen (docs/finetuned.md gives the rule).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import random_colour_jitter, random_resized_crops
from ..features.extractor import FeatureExtractor, load_backbone
from ..features.weights import weights_sha256
from ..nets.efficientnet_lite import lite_spec
from .distances import NearestDistances
from .registry import register
from .torch_base import TrainedDetector

# Images per network call when scoring: every call sees exactly this many (the last is padded with
# copies), as in the feature extractor: convolutions give other last bits at other batch sizes.
SCORE_BATCH = 16


class TunedBackbone(nn.Module):
    """The pretrained backbone, pooled to its head; the stem and the first `frozen` blocks without
    gradient. `centre` and `bank` (the adapted training features) are buffers: a saved model
    holds them."""

    def __init__(self, backbone: str, frozen: int, size: int, input_scaling: str):
        super().__init__()
        import copy
        self.net = copy.deepcopy(load_backbone(backbone)).requires_grad_(True)
        del self.net._fc  # the ImageNet classifier: not part of the features
        self.frozen = frozen
        for module in (self.net._conv_stem, self.net._bn0, *self.net._blocks[:frozen]):
            module.requires_grad_(False)
        self.extractor = FeatureExtractor(backbone, size, input_scaling, engine="torch")  # its `prepare`
        head = self.net._conv_head.out_channels
        self.register_buffer("centre", torch.zeros(head))
        self.register_buffer("bank", torch.zeros(0, head))
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():  # ImageNet's statistics, always
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (any size, 1 or 3 channels) -> pooled head features (N, 1280)."""
        return self.body(self.extractor.prepare(x).contiguous(memory_format=torch.channels_last))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared images (N, 3, size, size) -> pooled head features (N, 1280)."""
        net = self.net
        with torch.no_grad():
            h = F.relu6(net._bn0(net._conv_stem(x)))
            for block in net._blocks[:self.frozen]:
                h = block(h)
        for block in net._blocks[self.frozen:]:
            h = block(h)
        return F.relu6(net._bn1(net._conv_head(h))).mean(dim=(2, 3))


class TunedScore(nn.Module):
    """The score as one graph (ONNX export): float images of one shape -> `InputGraph` (the
    extractor's resize and scaling) -> the tuned network's features -> kNN to the bank (a
    constant): 1 - the mean of the k largest cosines, or the mean of the k smallest Euclidean
    distances (`NearestDistances`)."""

    def __init__(self, model: TunedBackbone, shape: tuple[int, int, int], k: int, normalise: bool):
        super().__init__()
        self.prepare, self.model = model.extractor.input_graph(shape), model.eval()
        self.k, self.normalise = min(k, len(model.bank)), normalise
        self.nearest = None if normalise else NearestDistances(model.bank, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.body(self.prepare(x))
        if self.normalise:
            return 1 - (F.normalize(f, dim=1) @ self.model.bank.T).topk(self.k, dim=1).values.mean(1)
        return self.nearest(f).mean(1)


class FineTunedFeatureDetector(TrainedDetector):
    """The shared part: the tuned backbone, the centre, the bank and the kNN score. A subclass
    writes `_loss`, and `normalise` (unit-norm features, cosine kNN) or not (Euclidean).
    Exports to ONNX (`TunedScore`)."""

    extras = ("pretrained",)
    exportable = True
    score_batch_size = 4 * SCORE_BATCH  # images a scoring pass, in calls of SCORE_BATCH
    normalise = True
    loss_names = ()

    def __init__(self, size: int = 128, input_scaling: str = "pm1", backbone: str = "efficientnet-lite0",
                 frozen_blocks: int = 6, k: int = 2, epochs: int = 5, batch_size: int = 32, lr: float = 1e-5,
                 **base):
        self.size, self.input_scaling, self.backbone = int(size), input_scaling, backbone
        self.frozen_blocks, self.k = int(frozen_blocks), int(k)
        FeatureExtractor(backbone, self.size, input_scaling)  # checks them
        blocks = sum(group[0] for group in lite_spec(backbone).blocks)
        if not 0 <= self.frozen_blocks <= blocks:
            raise ValueError(f"frozen_blocks must be in [0, {blocks}] ({backbone} has {blocks} blocks), "
                             f"got {frozen_blocks}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, **base)

    def preferred_image_size(self) -> int:
        return self.size

    def _build(self, shape):
        weights_sha256(self.backbone)  # a missing package: its install hint, before any work
        return TunedBackbone(self.backbone, self.frozen_blocks, self.size, self.input_scaling)

    def features(self, model: TunedBackbone, x: torch.Tensor) -> torch.Tensor:
        f = model(x)
        return F.normalize(f, dim=1) if self.normalise else f

    def embed(self, model: TunedBackbone, x: torch.Tensor) -> torch.Tensor:
        """Features in calls of exactly SCORE_BATCH images: an image's do not depend on its batch."""
        n, pad = len(x), -len(x) % SCORE_BATCH
        if pad:
            x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
        return torch.cat([self.features(model, x[i:i + SCORE_BATCH]) for i in range(0, len(x), SCORE_BATCH)])[:n]

    @torch.no_grad()
    def all_features(self, model: TunedBackbone, x: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        out = self.embed(model, x)
        model.train(was_training)
        return out

    def _on_epoch(self, model, x, epoch):
        if epoch == 0:  # the pretrained features' centre (a resume loads it with the weights)
            model.centre.copy_(self.all_features(model, x).mean(0))
        return {}

    def _val_loss(self, model, x_val):
        """Mean squared distance of the validation features to the centre: a diagnostic (`select`
        is "last" unless set; compactness alone would favour a collapse)."""
        return float((self.all_features(model, x_val) - model.centre).pow(2).sum(1).mean())

    def _fit(self, x, x_val, y=None):
        super()._fit(x, x_val, y)
        self.model_.bank = self.all_features(self.model_, x)  # the adapted training features

    def _score_batch(self, model, x):
        f = self.embed(model, x)
        k = min(self.k, len(model.bank))
        if self.normalise:
            return 1 - (f @ model.bank.T).topk(k, dim=1).values.mean(1)
        return torch.cdist(f, model.bank).topk(k, dim=1, largest=False).values.mean(1)

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return TunedScore(self.model_.cpu(), tuple(self.input_shape_), self.k, self.normalise)

    def _load_state(self, tensors, info):
        self.model_ = self._build(tuple(self.input_shape_))
        self.model_.bank = tensors["model.bank"].clone()  # its size is the training set's
        super()._load_state(tensors, info)

    def _build_modules(self, shape):
        model = getattr(self, "model_", None)
        return {self.module_name: model if model is not None else self._build(shape)}


@register
class FeatMSCDetector(FineTunedFeatureDetector):
    """Mean-Shifted Contrastive fine-tuning, scored by cosine kNN (k=2). Ignores `y`."""

    name = "feat-msc"
    summary = "ImageNet features tuned by mean-shifted contrast; kNN"

    def __init__(self, temperature: float = 0.25, angular: bool = True, **tuned):
        if not float(temperature) > 0 or float(temperature) == float("inf"):
            raise ValueError(f"temperature must be a positive number, got {temperature}")
        if not isinstance(angular, (bool, int)) or angular not in (0, 1):
            raise ValueError(f"angular must be true or false, got {angular!r}")
        self.temperature, self.angular = float(temperature), bool(angular)
        super().__init__(**tuned)

    def _views(self, x, generator):
        return random_colour_jitter(random_resized_crops(x, self.size, generator), generator)

    def _loss(self, model, x, generator):
        views = torch.cat([self._views(x, generator), self._views(x, generator)])
        shifted = self.features(model, views) - model.centre
        loss = contrastive_loss(*shifted.chunk(2), self.temperature)
        if self.angular:  # their angular centre loss: the shifted features' squared norm
            loss = loss + shifted.pow(2).sum(1).mean() * 2
        return loss, {}


@register
class FeatPANDADetector(FineTunedFeatureDetector):
    """PANDA's compactness fine-tuning, scored by Euclidean kNN (k=2). Ignores `y`."""

    name = "feat-panda"
    summary = "ImageNet features tuned towards their centre; kNN"
    normalise = False

    def __init__(self, pull: float = 0.0, **tuned):
        if not 0 <= float(pull) < float("inf"):
            raise ValueError(f"pull must be a number >= 0, got {pull}")
        self.pull = float(pull)
        super().__init__(**tuned)

    def _build(self, shape):
        model = super()._build(shape)
        model.initial = [p.detach().clone() for p in model.trainable()]  # the pull's anchor; not saved
        return model

    def _loss(self, model, x, generator):
        loss = (self.features(model, x) - model.centre).pow(2).sum(1).mean()
        if self.pull:
            loss = loss + self.pull * sum((p - p0).pow(2).sum() for p, p0 in zip(model.trainable(), model.initial))
        return loss, {}


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent on the directions of a and b: row i of a and of b are two views of one
    image; every other row of either is a negative."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = len(a)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)
