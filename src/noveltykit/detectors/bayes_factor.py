"""The Bayes factor (tech report §2.2): is an image better explained by the normal model or by a
background model that stands for "anything else"?

    log BF(x) = log P(x | normal) - log P(x | background) + log c,   score = -log BF(x)

so higher = more novel, and the posterior odds favour "novel" where the score is above 0. `c` is
the prior odds of normal against novel. It shifts every score by the same log c, so it never
changes a ranking (AUROC), only where the odds threshold falls, and nothing in normal data can
learn it: it says how often novelties come, which normal images cannot tell.

The normal model: PCA to `n_components` directions, a Gaussian mixture on the coordinates (the
number of components, among `components`, with the highest normal-validation likelihood), and an
isotropic Gaussian on the residual (variance = the mean discarded variance), so the density lives
on the whole input space. The background model never sees a novel image:
- `gaussian`: that model's own covariance (PCA variances and residual) inflated by `inflate`,
  around the training mean;
- `uniform`: a flat density over the box of the inputs (pixels: [-1, 1]; features: the training
  range, widened by `margin` of it on each side);
- `compression` (pixels only): a universal code, the PNG size of the 8-bit image in bits
  (Serrà et al. 2019), as the density 2^-bits / bin^D of its 8-bit pixel bin.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from sklearn.mixture import GaussianMixture
from torch import nn

from .base import Detector, ExportNotSupported, export_not_supported
from .distances import Flattened, flatten
from .pca import principal_components
from .registry import register
from .vectors import VectorHead

BACKGROUNDS = ("gaussian", "uniform", "compression")
# `quantile`: the contract's validation quantile; `odds`: 0, novel where the posterior odds (prior
# odds c) favour the background
THRESHOLDS = ("quantile", "odds")
LOG_2PI = math.log(2 * math.pi)
REG = 1e-3  # the mixture's covariance regulariser, relative to the mean kept PCA variance


def gaussian_mixture_logpdf(z: torch.Tensor, weights, means, prec_chol) -> torch.Tensor:
    """log sum_k w_k N(z; mu_k, Sigma_k), Sigma_k^-1 = L_k L_k^T (sklearn's precisions_cholesky)."""
    d = z.shape[1]
    logs = []
    for w, mu, lc in zip(weights, means, prec_chol):
        y = (z - mu) @ lc
        logdet = torch.log(torch.diagonal(lc)).sum()
        logs.append(math.log(w) + logdet - 0.5 * (d * LOG_2PI + y.pow(2).sum(1)))
    return torch.logsumexp(torch.stack(logs, 1), 1)


def png_bits(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images in [-1, 1] -> (N,) the bits of each as an 8-bit PNG (compress level 9)."""
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    bits = []
    for img in u8:
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(buf, "PNG", compress_level=9)
        bits.append(8 * buf.tell())
    return torch.tensor(bits, dtype=torch.float64)


class BayesFactorModel(VectorHead):
    """The normal and background densities on (N, D) vectors, as a vector head; `image_shape`
    (pixels) allows the compression background and fixes the uniform box to [-1, 1]."""

    def __init__(self, n_components: int, components: tuple[int, ...], background: str, inflate: float,
                 margin: float, log_c: float, seed: int, image_shape: tuple[int, ...] | None = None):
        self.n_components, self.components, self.background = n_components, components, background
        self.inflate, self.margin, self.log_c, self.seed = inflate, margin, log_c, seed
        self.image_shape = image_shape

    def fit(self, f: torch.Tensor, f_val: torch.Tensor) -> None:
        f, f_val = f.double(), f_val.double()
        self.mean_, evals, evecs = principal_components(f)
        d = max(1, min(self.n_components, len(f) - 1, f.shape[1]))
        self.basis_, self.variances_ = evecs[:, :d].contiguous(), evals[:d].clamp_min(1e-12)
        rest = evals[d:]
        # the residual's variance per discarded direction (the D - d of them, not only those seen)
        self.resid_var_ = torch.tensor(float(rest.sum()) / max(1, f.shape[1] - d) if f.shape[1] > d else 1.0,
                                       dtype=torch.float64).clamp_min(1e-12)
        z, z_val = self._coords(f), self._coords(f_val)
        reg = REG * float(self.variances_.mean())
        self.val_loglik_ = {}
        best = None
        for k in self.components:
            if k > len(z):
                continue
            gm = GaussianMixture(k, covariance_type="full", reg_covar=reg, random_state=self.seed).fit(z.numpy())
            self.val_loglik_[k] = float(gm.score(z_val.numpy()))
            if best is None or self.val_loglik_[k] > self.val_loglik_[best[0]]:
                best = (k, gm)
        k, gm = best
        self.converged_ = bool(gm.converged_)  # EM stopped at its iteration cap otherwise
        self.weights_ = torch.from_numpy(gm.weights_)
        self.means_ = torch.from_numpy(gm.means_)
        self.prec_chol_ = torch.from_numpy(gm.precisions_cholesky_)
        if self.image_shape is not None:
            self.lo_, self.hi_ = torch.full((f.shape[1],), -1.0, dtype=torch.float64), torch.ones(f.shape[1], dtype=torch.float64)
        else:
            lo, hi = f.min(0).values, f.max(0).values
            pad = self.margin * (hi - lo).clamp_min(1e-12)
            self.lo_, self.hi_ = lo - pad, hi + pad

    def _coords(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean_) @ self.basis_

    def _residual_sq(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        centred = f - self.mean_
        return (centred.pow(2).sum(1) - z.pow(2).sum(1)).clamp_min(0)

    def log_normal(self, f: torch.Tensor) -> torch.Tensor:
        f = f.double()
        z = self._coords(f)
        rest = f.shape[1] - z.shape[1]
        resid = -0.5 * (rest * (LOG_2PI + torch.log(self.resid_var_)) + self._residual_sq(f, z) / self.resid_var_)
        return gaussian_mixture_logpdf(z, self.weights_.tolist(), self.means_, self.prec_chol_) + resid

    def log_background(self, f: torch.Tensor) -> torch.Tensor:
        f = f.double()
        D = f.shape[1]
        if self.background == "uniform":  # full_like: a graph traced from it keeps its batch axis free
            return torch.full_like(f[:, 0], -float(torch.log(self.hi_ - self.lo_).sum()))
        if self.background == "compression":
            bin_width = 2 / 255  # one 8-bit level in [-1, 1]
            return -png_bits(f.float().view(-1, *self.image_shape)) * math.log(2) - D * math.log(bin_width)
        z = self._coords(f)
        var, rvar = self.variances_ * self.inflate, self.resid_var_ * self.inflate
        rest = D - z.shape[1]
        return -0.5 * (D * LOG_2PI + torch.log(var).sum() + rest * torch.log(rvar)
                       + (z.pow(2) / var).sum(1) + self._residual_sq(f, z) / rvar)

    def score(self, f: torch.Tensor) -> np.ndarray:
        """-log BF: log P(x | background) - log P(x | normal) - log c."""
        return (self.log_background(f) - self.log_normal(f) - self.log_c).numpy()

    def module(self) -> nn.Module:
        """`score` as one module (ONNX export): the fitted tensors become constants of the trace."""
        if self.background == "compression":
            raise ExportNotSupported("background='compression' codes each image as a PNG file, which no graph does")
        return BayesFactorScore(self)

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean_, "basis": self.basis_, "variances": self.variances_, "resid_var": self.resid_var_,
                "weights": self.weights_, "means": self.means_, "prec_chol": self.prec_chol_,
                "lo": self.lo_, "hi": self.hi_}

    def info(self) -> dict:
        return {"val_loglik": {str(k): v for k, v in self.val_loglik_.items()},
                "converged": getattr(self, "converged_", None)}

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        for k, v in tensors.items():
            setattr(self, f"{k}_", v.double())
        self.val_loglik_ = {int(k): v for k, v in info.get("val_loglik", {}).items()}
        self.converged_ = info.get("converged")


class BayesFactorScore(nn.Module):
    """Rows (N, D) -> -log BF (float64): `BayesFactorModel.score` without leaving torch."""

    def __init__(self, model: BayesFactorModel):
        super().__init__()
        self.model = model

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.model.log_background(f) - self.model.log_normal(f) - self.model.log_c


def check_bayes_params(n_components, components, background, inflate, margin, c, threshold, pixels: bool):
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if background == "compression" and not pixels:
        raise ValueError("background=compression codes the image's pixels; feature vectors have no PNG")
    if int(n_components) < 1 or not components or min(components) < 1:
        raise ValueError(f"need n_components >= 1 and mixture sizes >= 1, got {n_components}, {components}")
    if float(inflate) <= 1 or float(margin) < 0 or float(c) <= 0:
        raise ValueError(f"need inflate > 1, margin >= 0 and c > 0; got {inflate}, {margin}, {c}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")


def parse_components(components) -> tuple[int, ...]:
    """`1-2-4-8` (a method spec's form) or a sequence -> (1, 2, 4, 8)."""
    if isinstance(components, str):
        components = components.split("-")
    elif isinstance(components, int):
        components = (components,)
    return tuple(int(k) for k in components)


@register
class BayesFactorDetector(Detector):
    """The Bayes factor of a normal model of the pixels against a background model. Ignores `y`."""

    name = "bayes-factor"
    summary = "pixels: Bayes factor, normal vs background model"
    exportable = True  # but for background="compression"

    def __init__(self, n_components: int = 32, components: str = "1-2-4-8", background: str = "gaussian",
                 inflate: float = 4.0, c: float = 1.0, threshold: str = "quantile", **base):
        super().__init__(**base)
        check_bayes_params(n_components, parse_components(components), background, inflate, 0.0, c, threshold,
                           pixels=True)
        self.n_components, self.components, self.background = int(n_components), components, background
        self.inflate, self.c, self.threshold = float(inflate), float(c), threshold

    def _model(self, shape) -> BayesFactorModel:
        return BayesFactorModel(self.n_components, parse_components(self.components), self.background,
                                self.inflate, 0.0, math.log(self.c), self.random_state, image_shape=tuple(shape))

    def _fit(self, x, x_val, y=None):
        self.model_ = self._model(x.shape[1:])
        self.model_.fit(flatten(x), flatten(x_val))

    def _threshold(self, val_scores: np.ndarray) -> float:
        return 0.0 if self.threshold == "odds" else super()._threshold(val_scores)

    def _threshold_rule(self) -> dict:
        if self.threshold == "odds":  # no quantile: the Bayes factor's own boundary
            return {"rule": "log Bayes factor 0 (even odds of novel and normal)"}
        return super()._threshold_rule()

    def fit_report(self) -> dict:
        return {"mixture_components": len(self.model_.weights_), "val_loglik": self.model_.val_loglik_,
                "mixture_converged": self.model_.converged_}

    def _score(self, x) -> np.ndarray:
        return self.model_.score(flatten(x))

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        try:
            return Flattened(self.model_.module())
        except ExportNotSupported as exc:
            raise export_not_supported(self.name, str(exc)) from None

    def _state(self):
        return self.model_.state()

    def _info(self):
        return self.model_.info()

    def _load_state(self, tensors, info):
        self.model_ = self._model(self.input_shape_)
        self.model_.load_state(tensors, info)
