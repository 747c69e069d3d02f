"""Training of the tech report's GAN novelty detector (§2.6; A.4 Algorithms 1 and 2): the
discriminator, trained real vs generated, is the detector.

Per loop batch: one discriminator step on the batch against as many fakes; after every `k`-th,
one generator step on fresh noise. The losses (p = D(x), the probability of "real"):

    non-saturating  L_C = -log p(x) - log(1 - p(G(z)))      L_F = -log p(G(z))
    minimax         L_C as above                            L_F = log(1 - p(G(z)))   (saturates early)
    report          L_C = -log p(G(z))                      L_F = -log(1 - p(G(z))) - log p(x)

`report` is §2.6's pair as written there (Curator the discriminator, Forger the generator); read
literally it trains D to call fakes real and G to make fakes D rejects. A.5's Curator and Forger
losses are `non-saturating`. `prob_eps` clamps p to [eps, 1 - eps] first (`stabilisers`).

`generator="none"` is the noise-contrastive variant (A.4 Algorithm 1): the fakes are drawn from a
fixed distribution, uniform over [-1, 1] or a per-pixel Gaussian of the training images.
`init="ae"` first trains an encoder and the generator as its decoder on reconstruction for
`ae_epochs` (the adversarial-autoencoder initialisation, Fig. 3.4); `joint_ae` keeps adding
`w_rec` x that reconstruction loss to the generator's steps (Fig. 3.4's three data flows).
Learning-rate control (`lr_control`) and the pathology monitors (`on_pathology`) are the shared
ones of `train.lr_control` and `train.pathology`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..nets.dcgan import NORMS, init_weights
from ..nets.noise_gan import NoiseGAN
from .lr_control import LRControl, LRControlFields, set_lr
from .pathology import PathologyFields, PathologyMonitor, StepWatch
from .stabilisers import clip_gradients, clamp_probability

LOSSES = ("non-saturating", "minimax", "report")
GENERATORS = ("dcgan", "none")
NOISES = ("uniform", "gaussian")
INITS = ("random", "ae")


@dataclass
class DiscGANConfig(LRControlFields, PathologyFields):
    generator: str = "dcgan"
    noise: str = "uniform"  # generator="none" only
    width: int = 32
    code: int = 64  # noise dimensions
    norm: str = "batch"
    d_dropout: float = 0.0
    k: int = 1  # discriminator steps per generator step
    loss: str = "non-saturating"
    prob_eps: float = 0.0
    grad_clip: float = 0.0
    init: str = "random"
    ae_epochs: int = 3  # init="ae": epochs of autoencoder training before the GAN's
    joint_ae: bool = False
    w_rec: float = 1.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: int = 10  # GAN epochs (after the autoencoder's)
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        for name, allowed in (("generator", GENERATORS), ("noise", NOISES), ("loss", LOSSES), ("init", INITS),
                              ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.generator == "none" and (self.init == "ae" or self.joint_ae):
            raise ValueError("generator='none' has no generator to initialise or train as a decoder")
        if self.joint_ae and self.init != "ae":
            raise ValueError("joint_ae needs init='ae' (the encoder it trains comes from there)")
        for name in ("width", "code", "k", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.prob_eps < 0.5 or self.lr <= 0 or self.ae_epochs < 0:
            raise ValueError(f"need 0 <= prob_eps < 0.5, lr > 0, ae_epochs >= 0; got {self.prob_eps}, {self.lr}, "
                             f"{self.ae_epochs}")
        LRControl.of(self)
        PathologyMonitor(self)  # checks the monitor fields

    @property
    def pretrain_epochs(self) -> int:
        return self.ae_epochs if self.init == "ae" else 0


def build_network(cfg: DiscGANConfig, channels: int, size: int) -> NoiseGAN:
    net = NoiseGAN(channels, size, cfg.width, cfg.code, norm=cfg.norm, d_dropout=cfg.d_dropout,
                   generator=cfg.generator != "none", encoder=cfg.init == "ae")
    init_weights(net)
    return net


def log_probs(logit: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p, log(1 - p)) of D's probability of "real", clamped to [eps, 1 - eps] when eps > 0."""
    if eps <= 0:
        return F.logsigmoid(logit), F.logsigmoid(-logit)
    p = clamp_probability(torch.sigmoid(logit), eps)
    return p.log(), (-p).log1p()


def curator_loss(kind: str, logit_real: torch.Tensor, logit_fake: torch.Tensor, eps: float) -> torch.Tensor:
    real, _ = log_probs(logit_real, eps)
    fake_real, fake_fake = log_probs(logit_fake, eps)
    if kind == "report":
        return -fake_real.mean()
    return -real.mean() - fake_fake.mean()


def forger_loss(kind: str, logit_fake: torch.Tensor, logit_real: torch.Tensor | None, eps: float) -> torch.Tensor:
    fake_real, fake_fake = log_probs(logit_fake, eps)
    if kind == "non-saturating":
        return -fake_real.mean()
    if kind == "minimax":
        return fake_fake.mean()
    real = log_probs(logit_real, eps)[0].mean() if logit_real is not None else 0.0
    return -fake_fake.mean() - real


class DiscGANUnit:
    """The discriminator-as-detector GAN as a unit of the shared training loop (`train.loop`)."""

    loss_names = ("loss_g", "loss_d", "loss_rec")

    def __init__(self, cfg: DiscGANConfig, net: NoiseGAN, x_train: torch.Tensor):
        self.cfg, self.net = cfg, net
        betas = (cfg.beta1, cfg.beta2)
        self.opt_d = torch.optim.Adam(net.discriminator.parameters(), lr=cfg.lr, betas=betas)
        g_params = [p for m in (net.generator, net.encoder) if m is not None for p in m.parameters()]
        self.opt_g = torch.optim.Adam(g_params, lr=cfg.lr, betas=betas) if g_params else None
        self.control, self.watch = LRControl.of(cfg), StepWatch(cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # noise, saved with the state
        flat = x_train.flatten(1)  # the fixed Gaussian of the noise-contrastive variant
        self.noise_mean, self.noise_std = flat.mean(0), flat.std(0).clamp_min(1e-3)
        self.shape = tuple(x_train.shape[1:])
        self.phase, self.d_steps, self.reinits = "gan", 0, 0
        self.last_g = torch.zeros(())

    # --- noise and fakes ---------------------------------------------------------------------------
    def _randn(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator).to(self.noise_mean.device)

    def fakes(self, n: int) -> torch.Tensor:
        if self.net.generator is not None:
            return self.net.generate(self._randn(n, self.cfg.code))
        if self.cfg.noise == "uniform":
            return (torch.rand(n, *self.shape, generator=self.generator) * 2 - 1).to(self.noise_mean.device)
        return (self.noise_mean + self.noise_std * self._randn(n, self.noise_mean.numel())).view(n, *self.shape)

    # --- the loop's calls -----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> dict:
        self.net.train()
        self.phase = "ae" if epoch < self.cfg.pretrain_epochs else "gan"
        return {"phase": self.phase}

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if self.phase == "ae":
            rec = (self.net.reconstruct(x) - x).pow(2).mean()
            self._descend(self.opt_g, self.net.generator, rec)
            zero = torch.zeros((), device=x.device)
            return torch.stack([zero, zero, rec.detach()])
        cfg = self.cfg
        fake = self.fakes(len(x))
        logit_real, logit_fake = self.net.logit(x), self.net.logit(fake.detach())
        loss_d = curator_loss(cfg.loss, logit_real, logit_fake, cfg.prob_eps)
        self._control(loss_d)
        self._descend(self.opt_d, self.net.discriminator, loss_d)
        self.d_steps += 1
        rec = torch.zeros((), device=x.device)
        if self.opt_g is not None and self.d_steps % cfg.k == 0:
            new_fake = self.fakes(len(x))
            loss_g = forger_loss(cfg.loss, self.net.logit(new_fake),
                                 self.net.logit(x) if cfg.loss == "report" else None, cfg.prob_eps)
            if cfg.joint_ae:
                rec = (self.net.reconstruct(x) - x).pow(2).mean()
            self._descend(self.opt_g, self.net.generator, loss_g + cfg.w_rec * rec)
            self.last_g = loss_g.detach()
        self.watch.record(self.last_g.to(x.device), loss_d, fake, x, logit_real, logit_fake, self.rates())
        return torch.stack([self.last_g.to(x.device), loss_d.detach(), rec.detach()])

    def _descend(self, opt, clipped, loss) -> None:
        """One optimiser step on `loss`, gradients for that optimiser's parameters only (G's step
        goes through D without touching D's gradients)."""
        opt.zero_grad(set_to_none=True)
        params = [p for group in opt.param_groups for p in group["params"]]
        loss.backward(inputs=params)
        if clipped is not None:
            clip_gradients(clipped, self.cfg.grad_clip)
        opt.step()

    def _control(self, loss_d: torch.Tensor) -> None:
        if self.control.active:  # a host sync a step; rates from the last G loss and this D loss
            eta_g, eta_d = self.control.rates(float(self.last_g), float(loss_d.detach()))
            set_lr(self.opt_d, eta_d)
            if self.opt_g is not None:
                set_lr(self.opt_g, eta_g)

    def rates(self) -> tuple[float, float]:
        return (self.opt_g.param_groups[0]["lr"] if self.opt_g else 0.0, self.opt_d.param_groups[0]["lr"])

    def sync(self, losses: torch.Tensor) -> None:
        self.watch.flush(self.reinit_d)

    def reinit_d(self) -> None:
        init_weights(self.net.discriminator)
        self.opt_d = torch.optim.Adam(self.net.discriminator.parameters(), lr=self.cfg.lr,
                                      betas=(self.cfg.beta1, self.cfg.beta2))
        self.reinits += 1

    @torch.no_grad()
    def end_epoch(self, x_val: torch.Tensor) -> dict:
        self.net.eval()
        logits = torch.cat([self.net.logit(x_val[i:i + 512]) for i in range(0, len(x_val), 512)])
        p = torch.sigmoid(logits)
        lr_g, lr_d = self.rates()
        val_loss = float((1 - p).mean()) if self.phase == "gan" else float("inf")  # select="val": a GAN epoch
        return {"d_acc_val": float((p > 0.5).float().mean()), "val_loss": val_loss,
                "pathology_events": len(self.watch.events), "d_reinits": self.reinits, "lr_g": lr_g, "lr_d": lr_d}

    def scoring_module(self) -> NoiseGAN:
        return self.net

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "opt_d": self.opt_d.state_dict(),
                "opt_g": self.opt_g.state_dict() if self.opt_g else None, "generator": self.generator.get_state(),
                "counters": [self.d_steps, self.reinits], "last_g": self.last_g.cpu(), "watch": self.watch.state()}

    def load_state(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.opt_g is not None:
            self.opt_g.load_state_dict(state["opt_g"])
        self.generator.set_state(state["generator"])
        self.d_steps, self.reinits = state["counters"]
        self.last_g = state["last_g"]
        self.watch.load_state(state["watch"])


def comparable(cfg: DiscGANConfig) -> dict:
    return asdict(cfg)
