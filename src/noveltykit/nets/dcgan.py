"""DCGAN encoder, decoder, generators and discriminator of P-KDGAN Table II, for 32x32 images.

Width `u` sets every hidden layer: encoder u -> 2u -> 4u -> latent, decoder latent -> 4u -> 2u ->
u -> channels. The teacher is u=64 (64-128-256); students use u=8, 2 or 1. All kernels are 4x4.
`size` 64 (or any larger power of two) grows one stride-2 block per doubling, the width doubling
again (64: u -> 2u -> 4u -> 8u); at 32 the networks are exactly the paper's.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

NORMS = ("batch", "instance", "none")
IMAGE_SIZE = 32
LATENT = 256


def norm_layer(kind: str, channels: int) -> nn.Module:
    """`batch`: BatchNorm (the paper). `instance`: each image normalised by itself, which is what
    BatchNorm computes at batch size 1 in training mode, but the same at train and eval time.
    `none`: no normalisation."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def _check(width: int, channels: int) -> None:
    if int(width) < 1:
        raise ValueError(f"width u must be >= 1, got {width}")
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")


def blocks(size: int) -> int:
    """Stride-2 blocks from `size` down to 4x4: 3 at the paper's 32."""
    n = (int(size) // 4).bit_length() - 1
    if size < 32 or 4 * 2 ** n != size:
        raise ValueError(f"the DCGAN networks take square images of 32, 64, 128, ... pixels, got {size}")
    return n


class Encoder(nn.Module):
    """x (B, C, size, size) -> z (B, out, 1, 1). `features(x)` is the (B, 4u, 4, 4) map (at 32)
    before the last convolution: the discriminator's f(.) for the adversarial feature-matching loss."""

    def __init__(self, channels: int = 3, width: int = 64, out: int = LATENT, norm: str = "batch",
                 size: int = IMAGE_SIZE):
        super().__init__()
        _check(width, channels)
        bias = norm == "none"  # a normalisation layer's shift makes a conv bias redundant
        widths = [channels] + [width * 2 ** i for i in range(blocks(size))]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):  # 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias), norm_layer(norm, c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], out, 4, 1, 0, bias=False)  # 4 -> 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Decoder(nn.Module):
    """z (B, latent, 1, 1) -> x_hat (B, C, size, size) in [-1, 1]."""

    def __init__(self, channels: int = 3, width: int = 64, latent: int = LATENT, norm: str = "batch",
                 size: int = IMAGE_SIZE):
        super().__init__()
        _check(width, channels)
        bias = norm == "none"
        widths = [width * 2 ** i for i in reversed(range(blocks(size)))]  # 32: 4u, 2u, u
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent, widths[0], 4, 1, 0, bias=bias),  # 1 -> 4
                                   norm_layer(norm, widths[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):  # 4 -> 8 -> 16
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), norm_layer(norm, c_out),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]  # 16 -> 32
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class GeneratorOutput(NamedTuple):
    z1: torch.Tensor  # E(x)
    x_hat: torch.Tensor  # D(z1)
    z2: torch.Tensor | None  # E2(x_hat); None for the plain encoder-decoder


class Generator(nn.Module):
    """G_ED (second_encoder=False) or G_EDE / G_EDÊ (second_encoder=True).

    EDE and EDÊ share this network and differ in how they score (latent vs image error); the
    forward pass returns z1, x_hat and z2 because distillation matches all three.
    """

    def __init__(self, channels: int = 3, width: int = 64, latent: int = LATENT, norm: str = "batch",
                 second_encoder: bool = True, size: int = IMAGE_SIZE):
        super().__init__()
        self.encoder = Encoder(channels, width, latent, norm, size)
        self.decoder = Decoder(channels, width, latent, norm, size)
        self.encoder2 = Encoder(channels, width, latent, norm, size) if second_encoder else None

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        z1 = self.encoder(x)
        x_hat = self.decoder(z1)
        z2 = self.encoder2(x_hat) if self.encoder2 is not None else None
        return GeneratorOutput(z1, x_hat, z2)


class Discriminator(nn.Module):
    """The encoder's shape ending in one logit; `features(x)` is f(.) of the adversarial loss."""

    def __init__(self, channels: int = 3, width: int = 64, norm: str = "batch", size: int = IMAGE_SIZE):
        super().__init__()
        self.net = Encoder(channels, width, out=1, norm=norm, size=size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B,), features): one pass serves both the BCE and the feature-matching loss."""
        f = self.net.features(x)
        return self.net.head(f).flatten(), f


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
