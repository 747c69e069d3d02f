"""Adversarial training of the EDE-GAN family (P-KDGAN §III.B; GANomaly-style).

Generator loss  L_g = w_con |x - x_hat|_1 + w_enc |z1 - z2|_2 + w_adv |f(x) - f(x_hat)|_2
Discriminator   L_d = BCE(D(x), real) + BCE(D(x_hat), fake)
(|.|_2 terms are mean squared errors, as in GANomaly's code.) Both players take their gradient at
the same parameters each step and then both step. `GANUnit` is one GAN as a unit of the shared
training loop (`train.loop`); `train_gan` hands it over.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ..nets.dcgan import NORMS, Discriminator, Generator, GeneratorOutput
from .gan_unit import GAN, build_networks, generator_losses  # noqa: F401 (re-exported)
from .loop import LoopConfig, train_loop
from .lr_control import LRControl, LRControlFields
from .pathology import PathologyFields, StepWatch

# Bump when a change to training alters the weights a config trains to: cached teachers made by
# older code are then trained afresh instead of reused.
TRAINING_CODE_VERSION = 1

VARIANTS = {  # variant -> (second encoder, score)
    "ed": (False, "image"),  # ED-GAN: encoder-decoder, image error
    "edhat": (True, "image"),  # EDÊ-GAN: second encoder only in the loss, image error
    "ede": (True, "latent"),  # EDE-GAN: encoder-decoder-encoder, latent error
}


@dataclass
class GANConfig(LRControlFields, PathologyFields):
    """Hyper-parameters (what the model is) and budget (how long it trains), kept apart; the
    learning-rate control fields (`lr_control`, ...) come from `LRControlFields`, the pathology
    monitors' (`on_pathology`, ...) from `PathologyFields`."""

    variant: str = "ede"
    width: int = 64
    channels: int = 1
    size: int = 32  # the images' side (from the data): 32 is the paper's networks, 64 grows a block
    norm: str = "batch"
    lr: float = 2e-3
    beta1: float = 0.5
    beta2: float = 0.99
    w_con: float = 10.0
    w_enc: float = 1.0
    w_adv: float = 1.0
    ema_decay: float = 0.0  # 0 = off; else score with an exponential moving average of G
    grad_clip: float = 0.0  # 0 = off; else max gradient norm for both players
    prob_eps: float = 0.0  # 0 = off; else clamp D's probabilities into [eps, 1 - eps]
    d_reinit_below: float = 1e-5  # re-initialise D when its loss collapses below this (0 = off)
    spectral_norm: bool = False  # on D's convolutions
    select: str = "last"  # "last" epoch, or "val": lowest normal-validation loss
    patience: int = 0  # early stop after this many epochs without a validation improvement (0 = off)
    min_delta: float = 0.0  # the improvement that counts, for `patience`
    precision: str = "fp32"  # "bf16": autocast the training passes (faster on CPUs with AMX/AVX512-BF16)
    # budget
    epochs: int = 15
    batch_size: int = 64
    max_train: int = 0  # 0 = all; else a seeded subset (CI smoke runs)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.select not in ("last", "val"):
            raise ValueError(f"select must be 'last' or 'val', got {self.select!r}")
        for name in ("width", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.prob_eps < 0.5:
            raise ValueError(f"prob_eps must be in [0, 0.5), got {self.prob_eps}")
        LRControl.of(self)  # checks the control fields
        StepWatch(self)  # and the monitors'

    @property
    def score_kind(self) -> str:
        return VARIANTS[self.variant][1]

    @property
    def second_encoder(self) -> bool:
        return VARIANTS[self.variant][0]


# Named sets of hyper-parameters. GANConfig's own defaults are the paper's values (Tables I, III).
PRESETS: dict[str, dict] = {
    "paper": {},
    # Measured on a development split of training images only (docs/benchmarks.md): per-image
    # normalisation, a 10x lower learning rate and a moving average of G make the last epoch good.
    "default": {"norm": "instance", "lr": 2e-4, "ema_decay": 0.99},
    # Small students (tried at u=2) learn too slowly at 2e-4 in the cpu budget; 2e-3 was better on the
    # same kind of development split (benchmarks/distill_ablation.py, docs/distill.md).
    "student": {"norm": "instance", "lr": 2e-3, "ema_decay": 0.99},
}
# Named budgets: how long to train, separate from what is trained.
BUDGETS: dict[str, dict] = {
    "quick": {"epochs": 1, "batch_size": 64, "max_train": 512},  # CI smoke runs
    "cpu": {"epochs": 8, "batch_size": 64},  # one MNIST class in about 3-4 minutes on 2 cores
    "full": {"epochs": 500, "batch_size": 1},  # the paper's schedule, for a GPU
}


def resolve_config(preset: str, budget: str, overrides: dict, **derived) -> GANConfig:
    """Config = GANConfig defaults <- preset <- budget <- explicit overrides (None = not given)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {list(BUDGETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return GANConfig(**{**PRESETS[preset], **BUDGETS[budget], **given, **derived})


def image_error(x: torch.Tensor, out: GeneratorOutput) -> torch.Tensor:
    """Per-image L_x = mean |x - x_hat| (ED-GAN and EDÊ-GAN scores)."""
    return (x - out.x_hat).abs().flatten(1).mean(1)


def latent_error(out: GeneratorOutput) -> torch.Tensor:
    """Per-image L_z = mean (z1 - z2)^2 (the EDE-GAN score)."""
    return (out.z1 - out.z2).pow(2).flatten(1).mean(1)


class ScoreModule(torch.nn.Module):
    """A generator and its score as one module in eval mode: images in [-1, 1] -> scores (N,).
    What ONNX export traces; `errors` computes the same two formulas."""

    def __init__(self, generator: Generator, kind: str):
        super().__init__()
        self.generator, self.kind = generator.eval(), kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.generator(x)
        return latent_error(out) if self.kind == "latent" else image_error(x, out)


@torch.no_grad()
def errors(g: Generator, x: torch.Tensor, batch_size: int = 512, device: str = "cpu"
           ) -> dict[str, np.ndarray]:
    """Per-image image error |x - x_hat|_1 and, with a second encoder, latent error |z1 - z2|^2,
    from one pass in eval mode (so a score never depends on which other images share its batch)."""
    was_training = g.training
    g.eval()
    image, latent = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        o = g(xb)
        image.append(image_error(xb, o).double().cpu())
        if o.z2 is not None:
            latent.append(latent_error(o).double().cpu())
    g.train(was_training)
    out = {"image": torch.cat(image).numpy()}
    if latent:
        out["latent"] = torch.cat(latent).numpy()
    return out


def score_batches(g: Generator, x: torch.Tensor, kind: str, batch_size: int = 512,
                  device: str = "cpu") -> np.ndarray:
    """Per-image novelty of one kind: "latent" (EDE-GAN) or "image" (ED-GAN, EDÊ-GAN)."""
    return errors(g, x, batch_size, device)[kind]


def validation_loss(cfg: GANConfig, g: Generator, x_val: torch.Tensor) -> float:
    """w_con L_con + w_enc L_enc on normal validation images (no adversarial term: it depends on
    a moving discriminator). The only signal `select="val"` may use."""
    err = errors(g, x_val, device=cfg.device)
    enc = err["latent"].mean() if "latent" in err else 0.0
    return float(cfg.w_con * err["image"].mean() + cfg.w_enc * enc)


@dataclass
class TrainResult:
    generator: Generator  # the selected epoch's scoring generator (EMA if on), eval mode
    discriminator: Discriminator
    history: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    trace: dict[str, list[float]] = field(default_factory=dict)  # per step (StepWatch.columns)
    pathology_events: list[dict] = field(default_factory=list)


def loop_config(cfg: GANConfig, epochs: int | None = None) -> LoopConfig:
    """The loop's settings of a GAN config (`epochs`: a different total, e.g. distillation's steps)."""
    return LoopConfig(epochs=epochs or cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, select=cfg.select,
                      patience=cfg.patience, min_delta=cfg.min_delta)


class GANUnit:
    """One GAN trained on its own losses, as a unit of the training loop."""

    loss_names = ("loss_g", "loss_con", "loss_enc", "loss_adv", "loss_d")

    def __init__(self, cfg: GANConfig, gan: GAN):
        self.cfg, self.gan, self.reinits = cfg, gan, 0
        self.watch = StepWatch(cfg)  # the pathology monitors and the per-step curves

    def begin_epoch(self, epoch: int) -> dict:
        self.gan.train()
        self.reinits = 0
        return {}

    def step(self, x: torch.Tensor) -> torch.Tensor:
        out, lg, loss_d = self.gan.losses(x)
        self.gan.update(lg["g"], loss_d)
        self.watch.record(lg["g"], loss_d, out.x_hat, x, *self.gan.last_logits, self.gan.rates)
        return torch.stack([lg["g"], lg["con"], lg["enc"], lg["adv"], loss_d]).detach()

    def sync(self, losses: torch.Tensor) -> None:
        self.reinits += self.gan.reinit_d_if_collapsed(float(losses[4]))
        self.watch.flush(self.gan.reinit_d)

    def end_epoch(self, x_val: torch.Tensor) -> dict:
        rates = dict(zip(("lr_g", "lr_d"), self.gan.rates)) if self.gan.lr_control.active else {}
        return {"d_reinits": self.reinits, "pathology_events": len(self.watch.events), **rates, "val_loss": validation_loss(self.cfg, self.gan.scoring, x_val)}

    def scoring_module(self) -> Generator:
        return self.gan.scoring

    def state(self) -> dict:
        return {**self.gan.state(), "watch": self.watch.state()}

    def load_state(self, state: dict) -> None:
        self.gan.load_state(state)
        self.watch.load_state(state["watch"])


def train_gan(cfg: GANConfig, x_train: torch.Tensor, x_val: torch.Tensor, *,
              checkpoint_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
              on_epoch_end: Callable[[int, Generator], dict] | None = None) -> TrainResult:
    """Train on normal images (float, [-1, 1], (N, C, 32, 32)); return the selected generator.

    A checkpoint is written after every epoch; `resume=True` continues from the last one exactly.
    `on_epoch_end(epoch, generator)` may return extra numbers for the history (diagnostics only).
    """
    torch.manual_seed(cfg.seed)
    x_train = subset(cfg, x_train).to(cfg.device)  # the whole normal set on the device: no loader
    gan = GAN(cfg, cfg.device)
    unit = GANUnit(cfg, gan)
    result = train_loop(unit, loop_config(cfg), x_train, x_val, config=_comparable(cfg),
                        checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                        monitor=on_epoch_end)
    return TrainResult(gan.scoring, gan.d, result.history, result.selected_epoch, unit.watch.columns(),
                       list(unit.watch.events))


def subset(cfg: GANConfig, x_train: torch.Tensor) -> torch.Tensor:
    """`max_train` > 0: a seeded subset of the training images (CI smoke runs)."""
    if cfg.max_train and len(x_train) > cfg.max_train:
        keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(cfg.seed))
        return x_train[keep[: cfg.max_train]]
    return x_train


def _comparable(cfg: GANConfig) -> dict:
    """The config as stored in checkpoints; the device may change between a run and its resume."""
    return {k: v for k, v in asdict(cfg).items() if k != "device"}
