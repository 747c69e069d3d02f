"""Size-generic convolutional builders: encoder, decoder, classifier, and a dense autoencoder.

Plain `nn.Module`s, no training logic. DCGAN-style blocks: each stride-2 4x4 convolution halves
the image and doubles the width until 4x4, then one 4x4 convolution maps to the code (1x1). Any
square power-of-two size from 8 up works. `lenet_encoder` / `lenet_decoder` are Ruff et al.'s
(2018) Deep SVDD networks made size-generic: 5x5 convolutions, each followed by a 2x2 max-pool. `bias=False` removes every bias and every affine
normalisation parameter (Deep SVDD needs it: with a bias the network can map everything to the
centre); `dropout` adds a `SampledDropout` after each hidden block (MC dropout can sample it).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .dropout import SampledDropout

NORMS = ("batch", "instance", "none")


def _levels(size: int) -> int:
    levels = math.log2(size / 4) if size >= 8 else -1
    if levels != int(levels) or levels < 1:
        raise ValueError(f"image size must be a power of two >= 8, got {size}")
    return int(levels)


def _norm(kind: str, channels: int, bias: bool) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=bias)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=bias)
    return nn.Identity()


def conv_encoder(channels: int, size: int, width: int, code: int, *, norm: str = "batch",
                 bias: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """(N, channels, size, size) -> (N, code, 1, 1)."""
    layers: list[nn.Module] = []
    c_in, c_out = channels, width
    for level in range(_levels(size)):
        layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias))
        if level > 0:  # DCGAN: no normalisation on the first block
            layers.append(_norm(norm, c_out, bias))
        layers.append(nn.LeakyReLU(0.2))
        if dropout:
            layers.append(SampledDropout(dropout))
        c_in, c_out = c_out, c_out * 2
    layers.append(nn.Conv2d(c_in, code, 4, 1, 0, bias=bias))
    return nn.Sequential(*layers)


def conv_decoder(channels: int, size: int, width: int, code: int, *, norm: str = "batch",
                 bias: bool = True) -> nn.Sequential:
    """(N, code, 1, 1) -> (N, channels, size, size) in [-1, 1] (tanh): the encoder's mirror."""
    levels = _levels(size)
    c = width * 2 ** (levels - 1)
    layers: list[nn.Module] = [nn.ConvTranspose2d(code, c, 4, 1, 0, bias=bias), _norm(norm, c, bias), nn.ReLU()]
    for _ in range(levels - 1):
        layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=bias), _norm(norm, c // 2, bias), nn.ReLU()]
        c //= 2
    layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=bias), nn.Tanh()]
    return nn.Sequential(*layers)


def lenet_encoder(channels: int, size: int, width: int, code: int, *, bias: bool = True) -> nn.Sequential:
    """(N, channels, size, size) -> (N, code): 5x5 convolution, BatchNorm (eps 1e-4, as Ruff et al.),
    leaky ReLU, 2x2 max-pool, the width doubling each level down to 4x4; then a linear map."""
    layers: list[nn.Module] = []
    c_in, c_out = channels, width
    for _ in range(_levels(size)):
        layers += [nn.Conv2d(c_in, c_out, 5, 1, 2, bias=bias), nn.BatchNorm2d(c_out, eps=1e-4, affine=bias),
                   nn.LeakyReLU(), nn.MaxPool2d(2)]
        c_in, c_out = c_out, c_out * 2
    layers += [nn.Flatten(), nn.Linear(c_in * 16, code, bias=bias)]
    return nn.Sequential(*layers)


def lenet_decoder(channels: int, size: int, width: int, code: int, *, bias: bool = True) -> nn.Sequential:
    """(N, code) -> (N, channels, size, size) in [-1, 1]: the encoder's mirror, with 2x nearest
    upsampling in place of each pool."""
    levels = _levels(size)
    c = width * 2 ** (levels - 1)
    layers: list[nn.Module] = [nn.Linear(code, c * 16, bias=bias), nn.Unflatten(1, (c, 4, 4)), nn.LeakyReLU()]
    for level in range(levels):
        c_out = channels if level == levels - 1 else c // 2
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(c, c_out, 5, 1, 2, bias=bias)]
        if level < levels - 1:
            layers += [nn.BatchNorm2d(c_out, eps=1e-4, affine=bias), nn.LeakyReLU()]
        c = c_out
    layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ConvClassifier(nn.Module):
    """A conv encoder to `code` features, then a linear layer to `n_classes` logits; `dropout`
    after each hidden block and before the linear layer."""

    def __init__(self, channels: int, size: int, width: int, n_classes: int, *, code: int = 128,
                 norm: str = "batch", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.features = conv_encoder(channels, size, width, code, norm=norm, bias=bias, dropout=dropout)
        self.drop = SampledDropout(dropout)
        self.head = nn.Linear(code, n_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.features(x).flatten(1))))


class AllConvNet(nn.Module):
    """Springenberg et al.'s All-CNN-C, the classifier of the report's certainty experiment: three
    3x3 convolutions of `width`, the third with stride 2, dropout, three of 2 x `width` (stride 2
    on the third), dropout, a 3x3 and a 1x1 of 2 x `width`, a 1x1 to the classes, global average
    pooling; ReLU between (input dropout 0.2 as theirs when `dropout` > 0). 12 layers counting the
    dropouts and the pooling; any input size from 8 up."""

    def __init__(self, channels: int, n_classes: int, width: int = 96, dropout: float = 0.5):
        super().__init__()
        w, w2 = width, 2 * width
        spec = [(channels, w, 3, 1), (w, w, 3, 1), (w, w, 3, 2), "drop", (w, w2, 3, 1), (w2, w2, 3, 1),
                (w2, w2, 3, 2), "drop", (w2, w2, 3, 1), (w2, w2, 1, 1), (w2, n_classes, 1, 1)]
        layers: list[nn.Module] = [SampledDropout(0.2 if dropout else 0.0)]
        for i, item in enumerate(spec):
            if item == "drop":
                layers.append(SampledDropout(dropout))
                continue
            c_in, c_out, k, stride = item
            layers.append(nn.Conv2d(c_in, c_out, k, stride, k // 2))
            if i < len(spec) - 1:  # the class scores stay linear
                layers.append(nn.ReLU())
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ConvAutoencoder(nn.Module):
    """conv_encoder -> code -> conv_decoder; `encode` gives the code (N, code)."""

    def __init__(self, channels: int, size: int, width: int, code: int, *, norm: str = "batch",
                 bias: bool = True):
        super().__init__()
        self.encoder = conv_encoder(channels, size, width, code, norm=norm, bias=bias)
        self.decoder = conv_decoder(channels, size, width, code, norm=norm, bias=bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DenseAutoencoder(nn.Module):
    """The tech report's simple two-layer autoencoder: pixels -> `hidden` units -> pixels.

    Encoder: one linear layer and a sigmoid; decoder: one linear layer and tanh (images in [-1, 1]).
    """

    def __init__(self, shape: tuple[int, int, int], hidden: int):
        super().__init__()
        self.shape, n = tuple(shape), math.prod(shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.Sigmoid())
        self.decoder = nn.Sequential(nn.Linear(hidden, n), nn.Tanh())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).view(x.shape[0], *self.shape)  # shape[0]: traced, the batch stays free


class ConvVAE(nn.Module):
    """Variational autoencoder: the encoder gives the posterior's mean and log-variance (each
    `code`-dim), the decoder maps a code to an image in [-1, 1]."""

    def __init__(self, channels: int, size: int, width: int, code: int, *, norm: str = "batch"):
        super().__init__()
        self.encoder = conv_encoder(channels, size, width, 2 * code, norm=norm)
        self.decoder = conv_decoder(channels, size, width, code, norm=norm)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).flatten(1).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)  # bounded: exp(logvar) never overflows

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])


class ContrastNorm(nn.Module):
    """Ruff et al.'s input preprocessing for Deep SVDD: global contrast normalisation of each image
    (subtract its mean, divide by its mean absolute deviation: the l1 version), then the affine map
    that takes the training images' range onto [-1, 1] (`fit_range`, on training images only).
    `enabled=False` is the identity. The range is a buffer, saved with the weights."""

    def __init__(self, enabled: bool):
        super().__init__()
        self.enabled = bool(enabled)
        self.register_buffer("range", torch.tensor([-1.0, 1.0]))

    @staticmethod
    def contrast(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        centred = flat - flat.mean(1, keepdim=True)
        scale = centred.abs().mean(1, keepdim=True).clamp_min(1e-8)  # a flat image stays at 0
        return (centred / scale).view_as(x)

    @torch.no_grad()
    def fit_range(self, x: torch.Tensor, batch: int = 4096) -> None:
        if not self.enabled:
            return
        parts = [self.contrast(x[i:i + batch]) for i in range(0, len(x), batch)]
        lo = min(float(p.min()) for p in parts)
        hi = max(float(p.max()) for p in parts)
        self.range.copy_(torch.tensor([lo, max(hi, lo + 1e-8)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        lo, hi = self.range[0], self.range[1]
        return (self.contrast(x) - lo) / (hi - lo) * 2 - 1


SVDD_ARCHS = ("dcgan", "lenet")


class SVDDNet(nn.Module):
    """Deep SVDD's network (Ruff et al. 2018): a bias-free conv encoder (BatchNorm without affine
    parameters; `arch` "dcgan" strided 4x4 blocks, or "lenet" their 5x5 conv + max-pool) to a
    `code`-dim feature, a mirrored decoder for autoencoder pre-training, and the
    hypersphere's centre and radius as buffers (saved with the weights). With `contrast=True` the
    input first goes through `ContrastNorm`; the decoder then reconstructs that normalised image
    (`target`)."""

    def __init__(self, channels: int, size: int, width: int, code: int, contrast: bool = False,
                 arch: str = "dcgan"):
        super().__init__()
        if arch not in SVDD_ARCHS:
            raise ValueError(f"arch must be one of {SVDD_ARCHS}, got {arch!r}")
        self.prep = ContrastNorm(contrast)
        if arch == "lenet":
            self.encoder = lenet_encoder(channels, size, width, code, bias=False)
            self.decoder = lenet_decoder(channels, size, width, code, bias=False)
        else:
            self.encoder = conv_encoder(channels, size, width, code, norm="batch", bias=False)
            self.decoder = conv_decoder(channels, size, width, code, norm="batch", bias=False)
        self.register_buffer("center", torch.zeros(code))
        self.register_buffer("radius", torch.zeros(()))

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return self.prep(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.prep(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.prep(x)))
