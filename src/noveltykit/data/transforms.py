"""Seeded transformations of image batches (N, C, H, W), for training-time noise and for
self-supervised labels: rotations by 90°, flips, translations, Gaussian noise.

Every random choice comes from a `torch.Generator` the caller seeds, so a run and its resume see
the same draws. Geometric ones have an exact inverse where one exists (`inverse`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rotate90(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rotate by k x 90° counter-clockwise (k may be negative)."""
    return torch.rot90(x, k % 4, dims=(2, 3))


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
