"""Seeded transformations of image batches (N, C, H, W), for training-time noise and for
self-supervised labels: rotations by 90°, flips, translations, Gaussian noise, and the random
crops and colour changes of contrastive learning.

Every random choice comes from a `torch.Generator` the caller seeds, so a run and its resume see
the same draws. Geometric ones have an exact inverse where one exists (`inverse`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rotate90(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rotate by k x 90° counter-clockwise (k may be negative). Written as torch.rot90 computes
    it (flips and a transpose), which ONNX export can trace; rot90 itself has no ONNX operator."""
    k %= 4
    if k == 1:
        return x.flip(3).transpose(2, 3)
    if k == 2:
        return x.flip((2, 3))
    return x.flip(2).transpose(2, 3) if k == 3 else x


def flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (its own inverse)."""
    return torch.flip(x, dims=(3,))


def translate(x: torch.Tensor, dy: int, dx: int, fill: str = "reflect") -> torch.Tensor:
    """Shift by (dy, dx) pixels, same size; the uncovered border is filled by `fill`: 'reflect'
    (mirror the image at its edge) or 'zeros' (0, mid-grey for images in [-1, 1])."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"translation ({dy}, {dx}) is not smaller than the image ({h}x{w})")
    mode = {"reflect": "reflect", "zeros": "constant"}.get(fill)
    if mode is None:
        raise ValueError(f"fill must be 'reflect' or 'zeros', got {fill!r}")
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))  # left, right, top, bottom
    padded = F.pad(x, pad, mode=mode)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top:top + h, left:left + w]


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, sigma^2), seeded, clamped back into [-1, 1]."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + sigma * noise).clamp(-1, 1)


def random_flips(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p (seeded)."""
    chosen = (torch.rand(len(x), generator=generator) < p).to(x.device)
    return torch.where(chosen[:, None, None, None], flip(x), x)


def random_translations(x: torch.Tensor, generator: torch.Generator, max_shift: int,
                        fill: str = "reflect") -> torch.Tensor:
    """Shift each image by its own seeded (dy, dx) in [-max_shift, max_shift]."""
    shifts = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=generator)
    return torch.cat([translate(x[i:i + 1], int(dy), int(dx), fill) for i, (dy, dx) in enumerate(shifts)])


def inverse(name: str, x: torch.Tensor, **kw) -> torch.Tensor:
    """Undo a geometric transformation: rotate90 (k), flip, translate (dy, dx; exact only where no
    border was filled). Gaussian noise has no inverse."""
    if name == "rotate90":
        return rotate90(x, -kw["k"])
    if name == "flip":
        return flip(x)
    if name == "translate":
        return translate(x, -kw["dy"], -kw["dx"], kw.get("fill", "reflect"))
    raise ValueError(f"{name!r} has no inverse (rotate90, flip and translate do)")


def random_resized_crops(x: torch.Tensor, size: int, generator: torch.Generator,
                         scale: tuple[float, float] = (0.2, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                         flip_p: float = 0.5) -> torch.Tensor:
    """A random crop of each image (area share in `scale`, aspect ratio in `ratio`, log-uniform),
    mirrored with probability `flip_p`, resized to size x size (bilinear): SimCLR's and MSC's
    crop, done for the whole batch at once by one sampling grid."""
    n = len(x)
    area = torch.empty(n).uniform_(*scale, generator=generator)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)  # crop width and height as shares of the image
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)  # centres keep the crop inside
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    mirror = torch.where(torch.rand(n, generator=generator) < flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * mirror, cx, h, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_colour_jitter(x: torch.Tensor, generator: torch.Generator, strength: float = 0.4,
                         p: float = 0.8, grey_p: float = 0.2) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1 - strength, 1 + strength]
    with probability `p`, then grey with probability `grey_p` (SimCLR's colour distortion without
    its hue shift); images in [-1, 1], 3 channels (grey images pass through the brightness and
    contrast steps only)."""
    n = len(x)
    u = (x + 1) / 2
    factors = 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * strength
    on = (torch.rand(n, generator=generator) < p).float()
    factors = (1 + on[:, None] * (factors - 1)).to(x.device, x.dtype).view(n, 3, 1, 1, 1)
    u = u * factors[:, 0]
    mean = u.mean(dim=(1, 2, 3), keepdim=True)
    u = mean + (u - mean) * factors[:, 1]
    if x.shape[1] == 3:
        grey = (0.299 * u[:, :1] + 0.587 * u[:, 1:2] + 0.114 * u[:, 2:])
        u = grey + (u - grey) * factors[:, 2]
        to_grey = (torch.rand(n, generator=generator) < grey_p).to(x.device).view(n, 1, 1, 1)
        u = torch.where(to_grey, grey.expand_as(u), u)
    return u.clamp(0, 1) * 2 - 1
