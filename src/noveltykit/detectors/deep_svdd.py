"""Deep SVDD (Ruff et al. 2018; P-KDGAN Table IV's DSVDD): map normal images close to a centre c.

Their recipe, and why:
- bias-free networks and BatchNorm without affine parameters: with a bias (or a norm's shift) the
  network can output the constant c for every image, a perfect and useless fit (hypersphere
  collapse). A network with bias terms is refused.
- autoencoder pre-training (`pretrain_epochs`, on the reconstruction error), then c = the mean
  feature of the training images, with coordinates within `eps` of 0 pushed to +-eps (a zero
  coordinate lets trivial weights reach c).
- one-class objective: mean ||phi(x) - c||^2; score = ||phi(x) - c||^2.
- `objective="soft-boundary"`: R^2 + (1/nu) mean(max(0, ||phi(x) - c||^2 - R^2)), R set after each
  epoch to the (1 - nu) quantile of the training distances; score = ||phi(x) - c||^2 - R^2.
- `arch="lenet"`: their network (5x5 convolutions and max-pooling; CIFAR-10's is width 32, code
  128); the default "dcgan" is the strided blocks every other conv family here uses.
- `contrast_norm=True`: their input preprocessing, global contrast normalisation (l1) of each
  image, then the training images' range mapped onto [-1, 1] (`nets.conv.ContrastNorm`).
- `fresh_optimizer=True`: a new Adam for the Deep SVDD phase, as their separate pre-training run
  gives; False keeps the pre-training moments.
- `fine_tune=F`: their two-phase learning-rate schedule ("searching + fine-tuning"): the last F
  epochs of each phase (pre-training, then Deep SVDD) at lr / 10. Ruff et al. train CIFAR-10
  250 + 100 epochs of pre-training and 150 + 100 of Deep SVDD.
- `lr` 1e-4 (Ruff et al.'s), chosen over 1e-3 and the two options above on the training-only
  development split (docs/reconstruction.md, "Deep SVDD: the development-split study").
Pre-training epochs record val_loss = inf, so `select="val"` always picks a Deep SVDD epoch.
"""
from __future__ import annotations

import torch

from ..nets.conv import SVDD_ARCHS, SVDDNet
from .registry import register
from .torch_base import SCORE_BATCH, TrainedDetector, reconstruction_error

OBJECTIVES = ("one-class", "soft-boundary")


@register
class DeepSVDDDetector(TrainedDetector):
    """Deep SVDD, one-class or soft-boundary, with autoencoder pre-training. Ignores `y`."""

    name = "deep-svdd"
    summary = "Deep SVDD: distance to a centre in learnt features"
    exportable = True
    loss_names = ()

    def __init__(self, width: int = 16, code: int = 32, arch: str = "dcgan", objective: str = "one-class", nu: float = 0.1,
                 pretrain_epochs: int = 10, eps: float = 0.1, bias: bool = False, contrast_norm: bool = False,
                 fresh_optimizer: bool = False, fine_tune: int = 0, lr: float = 1e-4,
                 weight_decay: float = 1e-6, **base):
        for name, flag in (("bias", bias), ("contrast_norm", contrast_norm), ("fresh_optimizer", fresh_optimizer)):
            if not isinstance(flag, (bool, int)) or flag not in (0, 1):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        if bias:
            raise ValueError("deep-svdd: a network with bias terms can map every image to the centre "
                             "(hypersphere collapse, Ruff et al. 2018 §3.3); Deep SVDD needs bias=False")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if not 0 < float(nu) <= 1 or float(eps) <= 0 or int(pretrain_epochs) < 0:
            raise ValueError(f"need 0 < nu <= 1, eps > 0, pretrain_epochs >= 0; got {nu}, {eps}, {pretrain_epochs}")
        if arch not in SVDD_ARCHS:
            raise ValueError(f"arch must be one of {SVDD_ARCHS}, got {arch!r}")
        self.width, self.code, self.arch, self.objective, self.nu = int(width), int(code), arch, objective, float(nu)
        self.pretrain_epochs, self.eps, self.bias = int(pretrain_epochs), float(eps), bool(bias)
        self.contrast_norm, self.fresh_optimizer, self.fine_tune = bool(contrast_norm), bool(fresh_optimizer), int(fine_tune)
        self._phase = "svdd"
        super().__init__(lr=lr, weight_decay=weight_decay, **base)
        if not 0 <= self.fine_tune <= min(self.epochs, self.pretrain_epochs or self.epochs):
            raise ValueError(f"fine_tune must be in [0, the epochs of each phase], got {fine_tune} "
                             f"(pretrain_epochs {pretrain_epochs}, epochs {self.epochs})")
        if self.lr_schedule != "constant":  # its own schedule (`fine_tune`) is the one it runs
            raise ValueError("deep-svdd schedules its learning rate by phase (fine_tune); "
                             f"lr_schedule={self.lr_schedule!r} is not supported")

    def _loop_epochs(self):
        """`epochs` counts the Deep SVDD epochs; the loop runs the pre-training epochs first."""
        return self.pretrain_epochs + self.epochs

    def _build(self, shape):
        return SVDDNet(shape[0], shape[1], self.width, self.code, contrast=self.contrast_norm, arch=self.arch)

    def _fresh_optimizer_at(self):
        return self.pretrain_epochs if self.fresh_optimizer and self.pretrain_epochs else None

    def _lr_at(self, epoch: int) -> float:
        """lr, or lr / 10 in the last `fine_tune` epochs of each phase."""
        phase_end = self.pretrain_epochs if self._pretraining(epoch) else self.pretrain_epochs + self.epochs
        return self.lr / 10 if epoch >= phase_end - self.fine_tune else self.lr

    def _pretraining(self, epoch: int) -> bool:
        return epoch < self.pretrain_epochs

    def _on_epoch(self, model, x, epoch):
        self._phase = "pretrain" if self._pretraining(epoch) else "svdd"
        if epoch == 0:  # the input range, from the training images (a resume loads it)
            model.prep.fit_range(x)
        if epoch == self.pretrain_epochs:  # pre-training done (or none): place the centre
            model.center.copy_(initial_center(model, x, self.eps))
        elif self.objective == "soft-boundary" and epoch > self.pretrain_epochs:
            model.radius.copy_(soft_radius(model, x, self.nu))
        return {"phase": self._phase}

    def distances(self, model, x):
        return (model.embed(x) - model.center).pow(2).sum(1)

    def _loss(self, model, x, generator):
        if self._phase == "pretrain":
            return reconstruction_error(model.target(x), model(x), "mse").mean(), {}
        d = self.distances(model, x)
        if self.objective == "soft-boundary":
            r2 = model.radius.pow(2)
            return r2 + torch.relu(d - r2).mean() / self.nu, {}
        return d.mean(), {}

    def _score_batch(self, model, x):
        d = self.distances(model, x)
        return d - model.radius.pow(2) if self.objective == "soft-boundary" else d

    def _val_loss(self, model, x_val):
        return float("inf") if self._phase == "pretrain" else super()._val_loss(model, x_val)


@torch.no_grad()
def embed_all(model: SVDDNet, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model.embed(x[i:i + SCORE_BATCH]) for i in range(0, len(x), SCORE_BATCH)])
    model.train(was_training)
    return out


def initial_center(model: SVDDNet, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The mean feature of the training images; coordinates within eps of 0 become +-eps."""
    c = embed_all(model, x).mean(0)
    small = c.abs() < eps
    c[small & (c < 0)] = -eps
    c[small & (c >= 0)] = eps
    return c


def soft_radius(model: SVDDNet, x: torch.Tensor, nu: float) -> torch.Tensor:
    """R = the (1 - nu) quantile of the training images' distances to the centre."""
    d = (embed_all(model, x) - model.center).pow(2).sum(1).sqrt()
    return torch.quantile(d, 1 - nu)
