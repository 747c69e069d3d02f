"""The networks of the tech report's GAN novelty detector (§2.6, Fig. 2.5, Fig. 3.4), as plain
modules (training lives in `train.disc_gan`):

- `discriminator`: images -> one logit, D(x) = sigmoid(logit) the probability of "real";
  DCGAN-style strided blocks, dropout optional (the report tried it);
- `generator`: noise z ~ N(0, I) of `code` dims -> images in [-1, 1]; absent for the noise-contrastive
  variant (a fixed noise distribution stands in for it);
- `encoder`: images -> z, only for the adversarial-autoencoder initialisation (the generator is then
  the autoencoder's decoder).
"""
from __future__ import annotations

import torch
from torch import nn

from .conv import conv_decoder, conv_encoder


class NoiseGAN(nn.Module):
    def __init__(self, channels: int, size: int, width: int, code: int, *, norm: str = "batch",
                 d_dropout: float = 0.0, generator: bool = True, encoder: bool = False):
        super().__init__()
        self.code = int(code)
        self.discriminator = conv_encoder(channels, size, width, 1, norm=norm, dropout=d_dropout)
        self.generator = conv_decoder(channels, size, width, code, norm=norm) if generator else None
        self.encoder = conv_encoder(channels, size, width, code, norm=norm) if encoder else None

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) discriminator logits."""
        return self.discriminator(x).flatten()

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z[:, :, None, None])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder path x -> encoder -> generator (as decoder)."""
        return self.generator(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(x)
