"""Anomaly maps drawn over their images: what `score --maps`, the HTML pages, `serve` and the
benchmark reports show. Plain numpy and Pillow (no plotting library at scoring time).

The colour scale is fixed by the model, not by each image: 0 at the median normal pixel score is
transparent-ish dark, the model's pixel threshold sits at the middle of the scale, and twice that
is the top. So two overlays are comparable, and a normal image stays dark instead of having its
own noise stretched to full colour.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

# An inferno-like scale by its anchors (dark purple -> red -> yellow), interpolated linearly.
ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


def colourise(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 RGB (..., 3) on the scale."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * (len(ANCHORS) - 1)
    low = np.minimum(v.astype(int), len(ANCHORS) - 2)
    frac = (v - low)[..., None]
    return (ANCHORS[low] * (1 - frac) + ANCHORS[low + 1] * frac).round().astype(np.uint8)


def scaled(amap: np.ndarray, threshold: float, floor: float = 0.0) -> np.ndarray:
    """A map on the model's scale: `floor` -> 0, `threshold` -> 0.5, twice above the floor -> 1."""
    span = max(float(threshold) - float(floor), 1e-12)
    return np.clip((np.asarray(amap, np.float64) - floor) / (2 * span), 0.0, 1.0)


def overlay(image: np.ndarray, amap: np.ndarray, threshold: float, floor: float = 0.0,
            alpha: float = 0.55) -> np.ndarray:
    """uint8 (H, W, 3) image (grey (H, W) or (H, W, 1) too) blended with its map's colours, the
    pixels above `threshold` outlined in white so the flagged region reads without colour."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.shape[:2] != amap.shape:
        raise ValueError(f"image {img.shape[:2]} and map {amap.shape} differ in size")
    v = scaled(amap, threshold, floor)
    out = (1 - alpha * v[..., None]) * img + alpha * v[..., None] * colourise(v)
    above = amap > threshold
    edge = above & ~_eroded(above)
    out[edge] = 255
    return out.round().astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """A 3x3 erosion without scipy: a pixel stays when its 8 neighbours are set (edges count as set)."""
    padded = np.pad(mask, 1, constant_values=True)
    h, w = mask.shape
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy:dy + h, dx:dx + w]
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
