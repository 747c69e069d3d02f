"""ED-GAN, EDÊ-GAN and EDE-GAN (P-KDGAN §III.B) as detectors under the common contract.

Parameters: a named preset and budget, and any `GANConfig` field to override them; where to
checkpoint and which device come through the `RunContext`.
The networks are plain modules (`nets.dcgan`); training is `train.gan.train_gan`.
The three give anomaly maps: the per-pixel squared error of the decoder's reconstruction
x_hat = D(E(x)), averaged over channels (`torch_base.ReconstructionMaps`). Their image scores are
other errors: ED-GAN and EDÊ-GAN's the mean absolute image error, EDE-GAN's the latent error
|E(x) - E2(x_hat)|^2, not derived from the map. The kdgan student gives none.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from .. import __version__
from ..train.gan import (TRAINING_CODE_VERSION, GANConfig, ScoreModule, build_networks, image_error,
                         latent_error, resolve_config, train_gan)
from .base import CONFIG_FILE, fingerprint  # noqa: F401 (fingerprint: re-exported)
from .registry import register
from .torch_base import ReconstructionMaps, TorchDetector

# Config fields that the data or the detector decide, not the user.
_DERIVED = {"variant", "channels", "size", "seed", "device"}  # device: from the RunContext
GAN_PARAMS = [f.name for f in dataclasses.fields(GANConfig) if f.name not in _DERIVED]


class _GANDetector(TorchDetector):
    """Parameters: a hyper-parameter `preset`, a training `budget`, and any GANConfig field to
    override them (None = from the preset or budget); the resolved config is saved when fitted."""

    variant = ""
    exportable = True  # `scoring_module`: the generator and its score (`train.gan.ScoreModule`)
    trace_: dict = {}  # read-only default: a distilled student keeps no trace
    events_: list = []

    def __init__(self, threshold_quantile: float = 0.95, validation_fraction: float = 0.1,
                 random_state: int = 0, preset: str = "default", budget: str = "cpu", **overrides):
        super().__init__(threshold_quantile, validation_fraction, random_state)
        unknown = set(overrides) - set(GAN_PARAMS)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; valid: {self._param_names()}")
        self.preset, self.budget = preset, budget
        for name in GAN_PARAMS:
            setattr(self, name, overrides.get(name))
        self.config(channels=1)  # validate now, not after the data is loaded

    @classmethod
    def _param_names(cls) -> list[str]:
        return super()._param_names() + GAN_PARAMS

    def config(self, channels: int, size: int = 32) -> GANConfig:
        return resolve_config(self.preset, self.budget, {n: getattr(self, n) for n in GAN_PARAMS},
                              variant=self.variant, channels=channels, size=size, seed=self.random_state,
                              device=self.context.torch_device)

    def _fit(self, x, x_val, y=None):
        if x.shape[2] != x.shape[3] or x.shape[2] < 32 or x.shape[2] & (x.shape[2] - 1):
            raise ValueError(f"{self.name}: the DCGAN networks take square images of 32, 64, 128, ... pixels, "
                             f"got {x.shape[2]}x{x.shape[3]}; load data through noveltykit.data (it resizes)")
        cfg = self.config(channels=x.shape[1], size=x.shape[2])
        ctx = self.context
        result = train_gan(cfg, x, x_val, checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume,
                           progress=ctx.progress, on_epoch_end=self._monitor())
        self.generator_, self.discriminator_ = result.generator.cpu(), result.discriminator.cpu()
        self.history_, self.selected_epoch_ = result.history, result.selected_epoch
        self.trace_, self.events_ = result.trace, result.pathology_events
        self.train_fingerprint_ = fingerprint(x)

    def fit_report(self) -> dict:
        """The history, and the per-step curves and pathology events where this fit kept them."""
        extra = {"trace": self.trace_, "pathology_events": self.events_} if self.trace_ else {}
        return {**super().fit_report(), **extra}

    def _score_batch(self, g, x):
        out = g(x)
        return latent_error(out) if self.config(x.shape[1]).score_kind == "latent" else image_error(x, out)

    def _build_modules(self, shape):
        g, d = build_networks(self.config(channels=shape[0], size=shape[1]))
        return {"g": g, "d": d}

    def _modules(self):
        return {"g": self.generator_, "d": self.discriminator_}

    def _set_modules(self, modules):
        self.generator_, self.discriminator_ = modules["g"], modules["d"]

    def _info(self) -> dict:
        config = dataclasses.asdict(self.config(self.input_shape_[0], self.input_shape_[1]))
        config.pop("device")  # where it ran is not what it is
        return {**super()._info(), "config": config, "train_fingerprint": self.train_fingerprint_}

    def _load_state(self, tensors, info):
        super()._load_state(tensors, info)
        self.train_fingerprint_ = info.get("train_fingerprint")

    def scoring_module(self) -> torch.nn.Module:
        """images (N, C, size, size) in [-1, 1] -> novelty scores (N,): what ONNX export traces."""
        self._check_fitted()
        return ScoreModule(self.generator_, self.config(self.input_shape_[0]).score_kind)


class _ReconstructingGAN(ReconstructionMaps, _GANDetector):
    """A GAN detector with anomaly maps: the per-pixel squared error of x_hat = D(E(x))."""

    def _reconstruct(self, g, x):
        return g(x).x_hat


@register
class EDEGANDetector(_ReconstructingGAN):
    """Encoder-decoder-encoder; scores with the latent error |E(x) - E2(D(E(x)))|^2; its maps are
    the image error of D(E(x)) per pixel, not the score's terms. Ignores `y`.
    With a `teacher_cache` in its context, a fitted one is filed there: it is the very teacher a
    `kdgan` student with the same resolved teacher values would train."""
    name, variant = "ede-gan", "ede"
    summary = "P-KDGAN's EDE-GAN teacher: error of re-encoded code"

    def _after_fit(self, x, x_val):
        if self.context.teacher_cache is not None:
            folder = Path(self.context.teacher_cache) / teacher_key(self, x, x_val)
            if not (folder / CONFIG_FILE).is_file():
                self.save(folder)


def teacher_key(teacher: _GANDetector, x: torch.Tensor, x_val: torch.Tensor) -> str:
    """Cache key of a teacher: the resolved values it trains with (never preset or budget names,
    whose meaning may change), the training code's version, and the fingerprints of its images."""
    config = dataclasses.asdict(teacher.config(x.shape[1]))
    config.pop("device")  # where it ran does not change what it is
    key_src = {"config": config, "threshold_quantile": teacher.threshold_quantile,
               "validation_fraction": teacher.validation_fraction, "training_code": TRAINING_CODE_VERSION,
               "noveltykit": __version__}
    return hashlib.sha256(json.dumps([key_src, fingerprint(x), fingerprint(x_val)], sort_keys=True)
                          .encode()).hexdigest()[:16]


@register
class EDGANDetector(_ReconstructingGAN):
    """Encoder-decoder; scores with the image error |x - x_hat|_1. Ignores `y`."""
    name, variant = "ed-gan", "ed"
    summary = "P-KDGAN's ED-GAN: image reconstruction error"


@register
class EDHatEGANDetector(_ReconstructingGAN):
    """EDÊ-GAN: the second encoder only shapes training; scores with the image error. Ignores `y`."""
    name, variant = "edhat-gan", "edhat"
    summary = "P-KDGAN's EDE-hat GAN: image reconstruction error"
