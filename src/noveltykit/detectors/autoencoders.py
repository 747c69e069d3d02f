"""The reconstruction family (tech report §2.4, A.3, §5.1): an image is as novel as it is badly
reconstructed by an autoencoder trained on normal images only. Score = the per-image
reconstruction error (`loss="mse"` or `"l1"`), higher = more novel. Anomaly maps: the per-pixel
squared error, averaged over channels, smoothed by `map_sigma` (`torch_base.ReconstructionMaps`;
with `loss="mse"` the image score is the map's mean before smoothing).

    ae              the report's simple two-layer dense autoencoder (pixels -> hidden -> pixels)
    conv-ae         convolutional autoencoder of DCGAN-style blocks (`nets.conv`)
    dae             conv-ae trained to undo Gaussian input noise `sigma` (scored on clean images)
    contractive-ae  reconstruction + lam * ||d code / d x||_F^2: exact for the dense encoder, an
                    unbiased random-projection estimate for the conv encoder (`projections` of them)
"""
from __future__ import annotations

import torch

from ..data.transforms import gaussian_noise
from ..nets.conv import NORMS, ConvAutoencoder, DenseAutoencoder
from .registry import register
from .torch_base import ReconstructionMaps, TrainedDetector, reconstruction_error

LOSSES = ("mse", "l1")


class _Reconstruction(ReconstructionMaps, TrainedDetector):
    """Shared by the family: the loss and the score are the reconstruction error, the maps its
    per-pixel squared error. Ignores `y`. Exports to ONNX: the network and the error in one graph."""

    loss_names = ()
    exportable = True

    def __init__(self, loss: str = "mse", **base):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss = loss
        super().__init__(**base)

    def _loss(self, model, x, generator):
        return reconstruction_error(x, model(x), self.loss).mean(), {}

    def _score_batch(self, model, x):
        return reconstruction_error(x, model(x), self.loss)


@register
class AEDetector(_Reconstruction):
    """The report's two-layer dense autoencoder: `hidden` sigmoid units. Ignores `y`."""

    name = "ae"
    summary = "dense autoencoder: reconstruction error"

    def __init__(self, hidden: int = 64, lr: float = 1e-3, **base):
        self.hidden = int(hidden)
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        super().__init__(lr=lr, **base)

    def _build(self, shape):
        return DenseAutoencoder(shape, self.hidden)


@register
class ConvAEDetector(_Reconstruction):
    """Convolutional autoencoder: `width` channels in the first block, a `code`-dim bottleneck.
    Ignores `y`."""

    name = "conv-ae"
    summary = "convolutional autoencoder: reconstruction error"

    def __init__(self, width: int = 16, code: int = 32, norm: str = "batch",
                 lr: float = 1e-3, **base):
        self.width, self.code, self.norm = int(width), int(code), norm
        if norm not in NORMS or self.width < 1 or self.code < 1:
            raise ValueError(f"need norm in {NORMS}, width >= 1 and code >= 1; got {norm!r}, {width}, {code}")
        super().__init__(lr=lr, **base)

    def _build(self, shape):
        channels, size, width = shape
        if size != width:
            raise ValueError(f"{self.name}: square images only, got {size}x{width}")
        return ConvAutoencoder(channels, size, self.width, self.code, norm=self.norm)


@register
class DAEDetector(ConvAEDetector):
    """Denoising autoencoder: trained to reconstruct the clean image from image + N(0, sigma^2)
    (seeded); scored on clean images. Ignores `y`."""

    name = "dae"
    summary = "denoising conv autoencoder: reconstruction error"

    def __init__(self, sigma: float = 0.2, **base):
        self.sigma = float(sigma)
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        super().__init__(**base)

    def _loss(self, model, x, generator):
        return reconstruction_error(x, model(gaussian_noise(x, self.sigma, generator)), self.loss).mean(), {}


def dense_contraction(model: DenseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Exact per-image ||J||_F^2 of the sigmoid encoder h = s(Wx + b):
    sum_j (h_j (1 - h_j))^2 sum_i W_ji^2 (Rifai et al. 2011)."""
    h = model.encode(x)
    w_sq = model.encoder[1].weight.pow(2).sum(1)  # (hidden,)
    return ((h * (1 - h)).pow(2) * w_sq).sum(1)


def projected_contraction(encode, x: torch.Tensor, generator: torch.Generator, projections: int) -> torch.Tensor:
    """Unbiased per-image estimate of ||J||_F^2 for any encoder: E_v ||J^T v||^2 = tr(J J^T) for
    v ~ N(0, I) in code space; `projections` draws of v, averaged. Differentiable (for training)."""
    x = x.detach().requires_grad_(True)
    h = encode(x)
    total = torch.zeros(len(x), device=x.device)
    for _ in range(projections):
        v = torch.randn(h.shape, generator=generator).to(h.device)
        (g,) = torch.autograd.grad(h, x, v, create_graph=True)
        total = total + g.pow(2).flatten(1).sum(1)
    return total / projections


@register
class ContractiveAEDetector(_Reconstruction):
    """Contractive autoencoder: reconstruction + `lam` * ||d code / d x||_F^2. `encoder="dense"`
    (the report's two-layer net, exact penalty) or `"conv"` (random-projection estimate). Ignores `y`."""

    name = "contractive-ae"
    summary = "contractive autoencoder: reconstruction error"
    loss_names = ("recon", "contraction")

    def __init__(self, encoder: str = "dense", lam: float = 0.01, projections: int = 1, hidden: int = 64,
                 width: int = 16, code: int = 32, lr: float = 1e-3, **base):
        if encoder not in ("dense", "conv"):
            raise ValueError(f"encoder must be 'dense' or 'conv', got {encoder!r}")
        self.encoder, self.lam, self.projections = encoder, float(lam), int(projections)
        self.hidden, self.width, self.code = int(hidden), int(width), int(code)
        if self.lam < 0 or self.projections < 1:
            raise ValueError(f"need lam >= 0 and projections >= 1, got {lam}, {projections}")
        super().__init__(lr=lr, **base)

    def _build(self, shape):
        if self.encoder == "dense":
            return DenseAutoencoder(shape, self.hidden)
        return ConvAutoencoder(shape[0], shape[1], self.width, self.code, norm="none")

    def contraction(self, model, x, generator):
        if self.encoder == "dense":
            return dense_contraction(model, x)
        return projected_contraction(model.encode, x, generator, self.projections)

    def _loss(self, model, x, generator):
        recon = reconstruction_error(x, model(x), self.loss).mean()
        contraction = self.contraction(model, x, generator).mean()
        return recon + self.lam * contraction, {"recon": recon, "contraction": contraction}
