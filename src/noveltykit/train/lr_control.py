"""Learning-rate control for adversarial training (tech report §3.3): each player's learning rate
set from the two losses at every step, so that the player doing worse learns faster.

With L_F the generator's (Forger's) loss and L_C the discriminator's (Curator's):

    none          eta_G, eta_D = the configured rates (no control)
    proportional  eta_G = alpha L_F,                    eta_D = alpha L_C
    exponential   eta_G = alpha exp(beta L_F),          eta_D = alpha exp(beta L_C)
    lv            eta_G = alpha L_F (a - b L_C),        eta_D = alpha L_C (c - d L_F)   (Lotka-Volterra)

Every rate is then bounded to [lr_min, lr_max]: a negative Lotka-Volterra rate would turn descent
into ascent, and an unbounded one lets one bad step throw the weights far. The report names the
exponential schedule without a formula; `exponential` is our reading of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("none", "proportional", "exponential", "lv")


@dataclass
class LRControlFields:
    """The fields an adversarial training config mixes in to offer learning-rate control."""

    # Defaults for a GAN near its equilibrium, L_C = 2 ln 2 and L_F = ln 2 (set from those values,
    # never tuned): proportional rates of about 1.4e-4 and 2.8e-4, Lotka-Volterra ones of about
    # 8e-5 (G) and 3.6e-4 (D); losses on another scale (EDE-GAN's L_g) need their own coefficients.
    lr_control: str = "none"  # none | proportional | exponential | lv (train.lr_control)
    lr_alpha: float = 2e-4
    lr_beta: float = 1.0
    lv_a: float = 2.0
    lv_b: float = 1.0
    lv_c: float = 2.0
    lv_d: float = 1.0
    lr_min: float = 0.0
    lr_max: float = 1e-3


@dataclass(frozen=True)
class LRControl:
    """One schedule and its coefficients (defaults: those of `LRControlFields`)."""

    kind: str = LRControlFields.lr_control
    alpha: float = LRControlFields.lr_alpha
    beta: float = LRControlFields.lr_beta  # exponential only
    a: float = LRControlFields.lv_a  # Lotka-Volterra coefficients
    b: float = LRControlFields.lv_b
    c: float = LRControlFields.lv_c
    d: float = LRControlFields.lv_d
    lr_min: float = LRControlFields.lr_min
    lr_max: float = LRControlFields.lr_max

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"lr_control must be one of {KINDS}, got {self.kind!r}")
        if self.alpha <= 0 or not 0 <= self.lr_min <= self.lr_max or self.lr_max <= 0:
            raise ValueError(f"need alpha > 0 and 0 <= lr_min <= lr_max, lr_max > 0; got alpha {self.alpha}, "
                             f"bounds [{self.lr_min}, {self.lr_max}]")

    @classmethod
    def of(cls, config) -> "LRControl":
        """From a training config's fields of the same names (`lr_control`, `lr_alpha`, `lr_beta`,
        `lv_a` ... `lv_d`, `lr_min`, `lr_max`): one spelling for every adversarial config."""
        return cls(config.lr_control, config.lr_alpha, config.lr_beta, config.lv_a, config.lv_b, config.lv_c,
                   config.lv_d, config.lr_min, config.lr_max)

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def rates(self, loss_g: float, loss_d: float) -> tuple[float, float]:
        """(eta_G, eta_D) for the current losses, bounded. Not defined for kind "none"."""
        if self.kind == "proportional":
            g, d = self.alpha * loss_g, self.alpha * loss_d
        elif self.kind == "exponential":  # overflow of exp is caught by the upper bound
            g = self.alpha * math.exp(min(self.beta * loss_g, 700.0))
            d = self.alpha * math.exp(min(self.beta * loss_d, 700.0))
        elif self.kind == "lv":
            g = self.alpha * loss_g * (self.a - self.b * loss_d)
            d = self.alpha * loss_d * (self.c - self.d * loss_g)
        else:
            raise ValueError("lr_control 'none' sets no rates")
        return self._bound(g), self._bound(d)

    def _bound(self, rate: float) -> float:
        if not math.isfinite(rate):  # a NaN loss: the training loop's guard reports it
            return self.lr_min
        return min(max(rate, self.lr_min), self.lr_max)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
