"""`gan-disc`: the tech report's GAN novelty detector (§2.6, A.4 Algorithm 2): a GAN's
discriminator, trained real vs generated, scores novelty as 1 - D(x) (`score="1-d"`) or
-log D(x) (`score="neg-log-d"`). `generator="none"` is the noise-contrastive variant (Algorithm 1).

Parameters are the shared loop's (`epochs`, `batch_size`, `lr`, `select`, `patience`,
`min_delta`; `epochs` counts the GAN's epochs, after `ae_epochs` of autoencoder training when
`init="ae"`), the other fields of `train.disc_gan.DiscGANConfig` (losses, k, the clamp,
clipping, dropout in D, the autoencoder initialisation, learning-rate control, the pathology
monitors) and `score`. The fit's per-step trace (both losses, the generated batch's variance,
D's accuracy, both rates) and every pathology event are in `fit_report()` for curves. Ignores `y`.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..train.disc_gan import DiscGANConfig, DiscGANUnit, build_network, comparable
from .registry import register
from .torch_base import LoopTrainedDetector

SCORES = ("1-d", "neg-log-d")
LOOP_PARAMS = ("epochs", "batch_size", "lr")  # the loop's parameters, passed on to the GAN's config
CONFIG_PARAMS = [f.name for f in dataclasses.fields(DiscGANConfig) if f.name not in ("seed", *LOOP_PARAMS)]


@register
class GANDiscriminatorDetector(LoopTrainedDetector):
    """A GAN's discriminator as the detector (see the module docstring). Ignores `y`."""

    name = "gan-disc"
    summary = "a GAN's discriminator: 1 - D(x)"
    exportable = True
    module_name = "net"

    def __init__(self, score: str = "1-d", lr: float = DiscGANConfig.lr, **params):
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.score = score
        config = {k: params.pop(k) for k in list(params) if k in CONFIG_PARAMS}
        for name in ("generator", "lr_control"):  # a spec's `generator=none` arrives as None
            if name in config and config[name] is None:
                config[name] = "none"
        defaults = DiscGANConfig()
        for name in CONFIG_PARAMS:
            setattr(self, name, config.get(name, getattr(defaults, name)))
        try:
            super().__init__(lr=lr, **params)
        except TypeError as exc:  # a name that is neither the loop's, the base's nor the config's
            raise ValueError(f"gan-disc: unknown parameter(s) ({exc}); valid: {self._param_names()}") from None
        self.config()  # check the values now

    @classmethod
    def _param_names(cls) -> list[str]:
        return super()._param_names() + CONFIG_PARAMS

    def config(self) -> DiscGANConfig:
        return DiscGANConfig(**{n: getattr(self, n) for n in (*CONFIG_PARAMS, *LOOP_PARAMS)}, seed=self.random_state)

    @property
    def net_(self):
        """The fitted network (generator, discriminator and, with init="ae", the encoder)."""
        return self.model_

    def _build(self, shape):
        return build_network(self.config(), shape[0], shape[1])

    def _unit(self, model, x):
        return DiscGANUnit(self.config(), model, x)

    def _loop_epochs(self) -> int:
        return self.config().pretrain_epochs + self.epochs

    def _run_identity(self) -> dict:
        return {"config": comparable(self.config())}

    def _after_training(self, unit) -> None:
        self.trace_, self.events_ = unit.watch.columns(), list(unit.watch.events)

    def _score_batch(self, net, x):
        logit = net.logit(x)
        return 1 - torch.sigmoid(logit) if self.score == "1-d" else F.softplus(-logit)  # -log sigmoid

    def fit_report(self) -> dict:
        return {**super().fit_report(), "trace": self.trace_, "pathology_events": self.events_}

    def _info(self) -> dict:
        return {**super()._info(), "pathology_events": self.events_}

    def _load_state(self, tensors, info):
        super()._load_state(tensors, info)
        self.events_, self.trace_ = info.get("pathology_events", []), {}
