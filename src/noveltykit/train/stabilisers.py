"""GAN stabilisers the tech report names (§3.1), each a small pure function."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def discriminator_bce(logit_real: torch.Tensor, logit_fake: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """BCE of real-vs-reconstructed, averaged over both halves.

    eps > 0 clamps the probabilities into [eps, 1 - eps] by p' = (1 - 2 eps) p + eps, so a
    discriminator that is certain never yields log(0). (The report writes p' = (1 - eps) p + eps,
    whose range [eps, 1] still allows log(1 - 1); we use the form that reaches the stated range.)
    """
    if eps <= 0:
        return 0.5 * (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                      + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
    p_real = clamp_probability(torch.sigmoid(logit_real), eps)
    p_fake = clamp_probability(torch.sigmoid(logit_fake), eps)
    return -0.5 * (torch.log(p_real).mean() + torch.log1p(-p_fake).mean())


def clamp_probability(p: torch.Tensor, eps: float) -> torch.Tensor:
    """p' = (1 - 2 eps) p + eps: a probability kept in [eps, 1 - eps], so log p' and log(1 - p')
    stay finite (the report's p' = (1 - eps) p + eps only reaches [eps, 1])."""
    return (1 - 2 * eps) * p + eps


def clip_gradients(module: nn.Module, max_norm: float) -> None:
    if max_norm > 0:
        nn.utils.clip_grad_norm_(module.parameters(), max_norm)


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation on every convolution (Miyato et al.): bounds the discriminator's
    Lipschitz constant, a common fix for its runaway confidence."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            add_spectral_norm(child)
    return module


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the message names the last good checkpoint."""
