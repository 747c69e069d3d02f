"""Anomaly maps: where in an image the novelty is, for detectors that score patches or pixels
(patchcore and padim; the reconstruction detectors' per-pixel error, `torch_base.ReconstructionMaps`).

A map detector's `_map(x)` gives raw scores on its patch grid, (N, h, w). `full_size` turns them
into maps at the images' own size, as PatchCore's code does: bilinear upsampling to (H, W), then
a Gaussian blur of `sigma` pixels (truncated at 4 sigma, as scipy.ndimage.gaussian_filter; edges
repeat the border pixel, its mode="nearest"). Plain torch, no scipy: `base` imports this module,
and scoring with a saved model must stay light.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# The built-in detectors that give maps (`produces_maps`), for the message of a detector that
# does not; tests/test_maps.py checks it against the registered ones.
MAP_DETECTORS = ("ae", "contractive-ae", "conv-ae", "dae", "ed-gan", "ede-gan", "edhat-gan", "padim",
                 "patchcore", "vae")
TRUNCATE = 4.0  # the kernel reaches 4 sigma either side: scipy's default
CHUNK = 32  # maps upsampled and blurred at once: their temporaries stay a few maps' size


class MapsNotSupported(ValueError):
    """`anomaly_map` of a detector that scores whole images only."""


def maps_not_supported(name: str) -> MapsNotSupported:
    return MapsNotSupported(f"{name}: scores whole images and gives no anomaly map; detectors that give "
                            f"maps: {', '.join(MAP_DETECTORS)}")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian of `sigma` pixels, radius int(4 sigma + 0.5) (scipy's)."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).float()


def blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, H, W) blurred by a Gaussian of `sigma` pixels, separably; sigma 0 returns them as they are."""
    if sigma == 0:
        return maps
    kernel = gaussian_kernel(sigma)
    r = len(kernel) // 2
    x = maps[:, None]
    # replicate padding works at any radius; reflection needs the map wider than the kernel
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def check_sigma(sigma) -> float:
    """`map_sigma` as a float: finite and >= 0 (0 = no smoothing)."""
    value = float(sigma)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"map_sigma must be a number of pixels >= 0 (0 = no smoothing), got {sigma!r}")
    return value


def full_size(grid: torch.Tensor, size: tuple[int, int], sigma: float) -> np.ndarray:
    """Raw patch-grid scores (N, h, w) -> float32 maps (N, H, W) at the images' size: bilinear
    upsampling (align_corners=False: each grid cell covers its share of the image), then `blur`."""
    out = np.empty((len(grid), *size), np.float32)
    for i in range(0, len(grid), CHUNK):
        part = grid[i:i + CHUNK].float()[:, None]
        up = F.interpolate(part, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        out[i:i + CHUNK] = blur(up, sigma).numpy()
    return out


def map_maxima(grid: torch.Tensor, size: tuple[int, int], sigma: float) -> np.ndarray:
    """The largest value of each full-size map (N,), without holding every map at once."""
    return np.concatenate([full_size(grid[i:i + CHUNK], size, sigma).reshape(min(CHUNK, len(grid) - i), -1).max(1)
                           for i in range(0, len(grid), CHUNK)])
