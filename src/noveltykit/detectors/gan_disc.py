"""`gan-disc`: the tech report's GAN novelty detector (§2.6, A.4 Algorithm 2): a GAN's
discriminator, trained real vs generated, scores novelty as 1 - D(x) (`score="1-d"`) or
-log D(x) (`score="neg-log-d"`). `generator="none"` is the noise-contrastive variant (Algorithm 1).

Parameters are the fields of `train.disc_gan.DiscGANConfig` (losses, k, the clamp, clipping,
dropout in D, the autoencoder initialisation, learning-rate control, the pathology monitors) and
`score`; `epochs` counts the GAN's epochs, after `ae_epochs` of autoencoder training when
`init="ae"`. The fit's per-step trace (both losses, the generated batch's variance, D's accuracy,
both rates) and every pathology event are in `fit_report()` for curves. Ignores `y`.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..train.disc_gan import DiscGANConfig, DiscGANUnit, build_network, comparable
from ..train.loop import LoopConfig, train_loop
from .registry import register
from .torch_base import TorchDetector

SCORES = ("1-d", "neg-log-d")
CONFIG_PARAMS = [f.name for f in dataclasses.fields(DiscGANConfig) if f.name != "seed"]


@register
class GANDiscriminatorDetector(TorchDetector):
    """A GAN's discriminator as the detector (see the module docstring). Ignores `y`."""

    name = "gan-disc"

    def __init__(self, score: str = "1-d", select: str = "last", patience: int = 0, min_delta: float = 0.0,
                 threshold_quantile: float = 0.95, validation_fraction: float = 0.1, random_state: int = 0,
                 **config):
        super().__init__(threshold_quantile, validation_fraction, random_state)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        unknown = set(config) - set(CONFIG_PARAMS)
        if unknown:
            raise ValueError(f"gan-disc: unknown parameter(s) {sorted(unknown)}; valid: {self._param_names()}")
        self.score, self.select, self.patience, self.min_delta = score, select, int(patience), float(min_delta)
        for name in ("generator", "lr_control"):  # a spec's `generator=none` arrives as None
            if name in config and config[name] is None:
                config[name] = "none"
        defaults = DiscGANConfig()
        for name in CONFIG_PARAMS:
            setattr(self, name, config.get(name, getattr(defaults, name)))
        self.config()  # check the values now
        self.loop_config()

    @classmethod
    def _param_names(cls) -> list[str]:
        return super()._param_names() + CONFIG_PARAMS

    def config(self) -> DiscGANConfig:
        return DiscGANConfig(**{n: getattr(self, n) for n in CONFIG_PARAMS}, seed=self.random_state)

    def loop_config(self) -> LoopConfig:
        cfg = self.config()
        return LoopConfig(epochs=cfg.pretrain_epochs + cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                          select=self.select, patience=self.patience, min_delta=self.min_delta)

    def _fit(self, x, x_val, y=None):
        cfg = self.config()
        torch.manual_seed(self.random_state)  # network initialisation
        dev = self.device()
        net = build_network(cfg, x.shape[1], x.shape[2]).to(dev)
        x = x.to(dev)
        unit = DiscGANUnit(cfg, net, x)
        ctx = self.context
        result = train_loop(unit, self.loop_config(), x, x_val.to(dev),
                            config={"detector": self.name, "config": comparable(cfg), "shape": list(x.shape[1:])},
                            checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume, progress=ctx.progress,
                            monitor=self._monitor(), name=self.name)
        self.net_ = net.cpu().eval()
        self.history_, self.selected_epoch_ = result.history, result.selected_epoch
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

    def _build_modules(self, shape):
        return {"net": build_network(self.config(), shape[0], shape[1])}

    def _modules(self):
        return {"net": self.net_}

    def _set_modules(self, modules):
        self.net_ = modules["net"]
