"""One GAN as a trainable unit: generator, discriminator, their optimisers and the optional moving
average of the generator. `train_gan` trains one; distillation trains a teacher and a student side
by side with the same two calls per step: `losses(x)` then `update(loss_g, loss_d)`.
"""
from __future__ import annotations


import torch

from ..nets.dcgan import Discriminator, Generator, GeneratorOutput, init_weights
from .ema import EMA
from .lr_control import LRControl, set_lr
from .precision import use_bf16
from .stabilisers import add_spectral_norm, clip_gradients, discriminator_bce


def generator_losses(cfg, x, out, f_real, f_fake) -> dict[str, torch.Tensor]:
    """L_g = w_con |x - x_hat|_1 + w_enc |z1 - z2|_2 + w_adv |f(x) - f(x_hat)|_2 (the |.|_2 terms
    as mean squared errors, as in GANomaly's code)."""
    con = (x - out.x_hat).abs().mean()
    enc = (out.z1 - out.z2).pow(2).mean() if out.z2 is not None else torch.zeros((), device=x.device)
    adv = (f_real.detach() - f_fake).pow(2).mean()
    return {"g": cfg.w_con * con + cfg.w_enc * enc + cfg.w_adv * adv, "con": con, "enc": enc, "adv": adv}


def build_networks(cfg) -> tuple[Generator, Discriminator]:
    """Fresh networks for a GANConfig, DCGAN-initialised (draws from torch's global generator)."""
    g = Generator(cfg.channels, cfg.width, norm=cfg.norm, second_encoder=cfg.second_encoder, size=cfg.size)
    d = Discriminator(cfg.channels, cfg.width, norm=cfg.norm, size=cfg.size)
    init_weights(g)
    init_weights(d)
    if cfg.spectral_norm:
        add_spectral_norm(d)
    return g, d


class GAN:
    """Networks on `device`, Adam for each player (the paper's betas), EMA of G when configured.

    `g`, `d`: start from these networks (e.g. a trained teacher) instead of fresh ones.
    """

    def __init__(self, cfg, device: torch.device | str = "cpu", g: Generator | None = None,
                 d: Discriminator | None = None):
        self.cfg = cfg
        self.bf16 = use_bf16(cfg.precision, device)  # falls back to fp32 where bf16 would crawl
        if g is None or d is None:
            g, d = build_networks(cfg)
        # given networks may come frozen (a saved model's moving average): this unit trains them
        self.g, self.d = g.to(device).requires_grad_(True), d.to(device).requires_grad_(True)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.ema = EMA(self.g, cfg.ema_decay) if cfg.ema_decay else None
        self.lr_control = LRControl.of(cfg)
        self.rates = (cfg.lr, cfg.lr)  # (eta_G, eta_D) of the last step

    @property
    def scoring(self) -> Generator:
        """The generator that scores: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.g

    def train(self) -> None:
        self.g.train()
        self.d.train()

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        """G alone, in the configured precision, outputs in fp32 (for losses without D)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.g(x)
        return type(out)(*(t.float() if t is not None else None for t in out))

    def losses(self, x: torch.Tensor) -> tuple[GeneratorOutput, dict[str, torch.Tensor], torch.Tensor]:
        """One forward pass of both players: (G's outputs, L_g and its terms, L_d), losses in fp32."""
        cfg = self.cfg
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.g(x)
            logit_real, f_real = self.d(x)
            logit_fake, f_fake = self.d(out.x_hat)
        self.last_logits = (logit_real.detach().float(), logit_fake.detach().float())  # for the monitors
        out = type(out)(*(t.float() if t is not None else None for t in out))
        lg = generator_losses(cfg, x, out, f_real.float(), f_fake.float())
        return out, lg, discriminator_bce(logit_real.float(), logit_fake.float(), cfg.prob_eps)

    def update(self, loss_g: torch.Tensor | None, loss_d: torch.Tensor | None) -> None:
        """Both players take their gradient at the current parameters, then both step (a None
        loss leaves that player untouched); then the EMA follows G. Under learning-rate control
        (`train.lr_control`) each player's rate is first set from the two losses."""
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        if loss_g is not None:
            loss_g.backward(inputs=list(self.g.parameters()), retain_graph=loss_d is not None)
        if loss_d is not None:
            loss_d.backward(inputs=list(self.d.parameters()))
        if self.lr_control.active and loss_g is not None and loss_d is not None:
            self.rates = self.lr_control.rates(float(loss_g.detach()), float(loss_d.detach()))  # a host sync a step
            set_lr(self.opt_g, self.rates[0])
            set_lr(self.opt_d, self.rates[1])
        if loss_g is not None:
            clip_gradients(self.g, self.cfg.grad_clip)
            self.opt_g.step()
        if loss_d is not None:
            clip_gradients(self.d, self.cfg.grad_clip)
            self.opt_d.step()
        if self.ema is not None and loss_g is not None:
            self.ema.update()

    def reinit_d_if_collapsed(self, loss_d: float) -> bool:
        """GANomaly's cure for a discriminator that has won outright: start it afresh."""
        if self.cfg.d_reinit_below and loss_d < self.cfg.d_reinit_below:
            self.reinit_d()
            return True
        return False

    def reinit_d(self) -> None:
        init_weights(self.d)

    def state(self) -> dict:
        state = {"g": self.g.state_dict(), "d": self.d.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "opt_d": self.opt_d.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        return state

    def load_state(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
