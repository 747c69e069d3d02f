"""Variational autoencoder (Kingma & Welling 2014) as a novelty detector (P-KDGAN Table IV's VAE).

Training minimises the negative ELBO per image: the summed squared reconstruction error (a
Gaussian decoder, variance 1/2) plus `beta` x KL(q(z|x) || N(0, I)). Scores, higher = more novel:
    score="recon"  per-image mean squared error of the reconstruction from the posterior mean
    score="elbo"   the negative ELBO, estimated with `samples` posterior draws. The draws' standard
                   normal vectors are fixed by `random_state` and shared by every image, so a
                   score is reproducible and does not depend on which images share its batch.
Anomaly maps, whichever the score: the per-pixel squared error of the reconstruction from the
posterior mean, averaged over channels (`torch_base.ReconstructionMaps`); with score="elbo" the
image score is not derived from the map (it adds the KL term and averages posterior draws).
Exports to ONNX with either score: the network, and for "elbo" the fixed draws as a constant.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nets.conv import NORMS, ConvVAE
from .registry import register
from .torch_base import BatchScore, ReconstructionMaps, TrainedDetector, reconstruction_error

SCORES = ("recon", "elbo")


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-image KL(N(mu, exp(logvar)) || N(0, I)), summed over the code."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def summed_sq_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x - x_hat).pow(2).flatten(1).sum(1)


@register
class VAEDetector(ReconstructionMaps, TrainedDetector):
    """Convolutional VAE (`width`, `code`); score `recon` or `elbo` (`samples` draws). Ignores `y`."""

    name = "vae"
    summary = "variational autoencoder: reconstruction error or ELBO"
    loss_names = ("recon", "kl")
    exportable = True

    def __init__(self, width: int = 16, code: int = 16, norm: str = "batch", beta: float = 1.0,
                 score: str = "recon", samples: int = 8, lr: float = 1e-3, **base):
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if norm not in NORMS or int(samples) < 1 or float(beta) < 0:
            raise ValueError(f"need norm in {NORMS}, samples >= 1, beta >= 0; got {norm!r}, {samples}, {beta}")
        self.width, self.code, self.norm, self.beta = int(width), int(code), norm, float(beta)
        self.score, self.samples = score, int(samples)
        super().__init__(lr=lr, **base)

    def _build(self, shape):
        return ConvVAE(shape[0], shape[1], self.width, self.code, norm=self.norm)

    def _loss(self, model, x, generator):
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        recon = summed_sq_error(x, model.decode(mu + (0.5 * logvar).exp() * eps)).mean()
        kl = kl_to_standard_normal(mu, logvar).mean()
        return recon + self.beta * kl, {"recon": recon, "kl": kl}

    def draws(self) -> torch.Tensor:
        """The (samples, code) standard normal vectors every image's ELBO estimate uses."""
        return torch.randn(self.samples, self.code, generator=torch.Generator().manual_seed(self.random_state))

    def negative_elbo(self, model, x: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        """`draws`: `self.draws()` when None (a traced graph is given them: a constant, not a sampler)."""
        mu, logvar = model.encode(x)
        draws = self.draws() if draws is None else draws
        recon = torch.stack([summed_sq_error(x, model.decode(mu + (0.5 * logvar).exp() * e.to(mu.device)))
                             for e in draws]).mean(0)
        return recon + self.beta * kl_to_standard_normal(mu, logvar)

    def _score_batch(self, model, x):
        if self.score == "elbo":
            return self.negative_elbo(model, x)
        return reconstruction_error(x, model(x), "mse")

    def scoring_module(self) -> nn.Module:
        if self.score != "elbo":
            return super().scoring_module()
        self._check_fitted()
        draws = self.draws()  # drawn now: traced, they are constants, as they are here a call
        return BatchScore(lambda model, x: self.negative_elbo(model, x, draws), self.scorer().cpu().eval())

    def _val_loss(self, model, x_val):
        """Selection reads the negative ELBO (the training objective), whichever score is reported."""
        return float(torch.cat([self.negative_elbo(model, x_val[i:i + 512].to(next(model.parameters()).device)).cpu()
                                for i in range(0, len(x_val), 512)]).mean())
