"""Anomaly maps drawn over their images: what `score --maps`, the HTML pages, `serve` and the
benchmark reports show (`map_grid`: a cell's most and least novel test images). Plain numpy and
Pillow (no plotting library at scoring time).

The colour scale is fixed by the model, not by each image: 0 at the median normal pixel score is
transparent-ish dark, the model's pixel threshold sits at the middle of the scale, and twice that
is the top. So two overlays are comparable, and a normal image stays dark instead of having its
own noise stretched to full colour.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

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
    return outline(out.round().astype(np.uint8), amap > threshold, FLAGGED_EDGE)


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


MASK_EDGE = (0, 230, 255)  # cyan: a ground-truth mask's outline
FLAGGED_EDGE = (255, 255, 255)  # white: the outline of the pixels above the pixel threshold
TILE = 96  # pixels a side of each image in a grid
GAP = 4
CAPTION = 14  # pixels of caption strip under each pair


def outline(rgb: np.ndarray, mask: np.ndarray, colour=MASK_EDGE) -> np.ndarray:
    """A copy of uint8 (H, W, 3) `rgb` with the edge pixels of a 0/1 `mask` drawn in `colour`."""
    m = np.asarray(mask).astype(bool)
    out = rgb.copy()
    out[m & ~_eroded(m)] = colour
    return out


def _tile(rgb: np.ndarray) -> Image.Image:
    im = Image.fromarray(rgb)
    return im.resize((TILE, TILE), Image.NEAREST if max(rgb.shape[:2]) <= TILE else Image.BILINEAR)


def map_grid(images: np.ndarray, maps: np.ndarray, scores: np.ndarray, threshold: float, floor: float = 0.0,
             masks: np.ndarray | None = None, labels: list[str] | None = None, k: int = 4) -> np.ndarray:
    """The `k` most novel images by score (top row) and the `k` least novel (bottom row, those not
    already above), each as a pair: the image, then its overlay on the model's scale; a mask's
    outline (cyan) on both where `masks` has one. `images` uint8 (N, C, H, W),
    `maps` (N, H, W), `labels` a caption each (default: the score). Returns uint8 RGB (h, w, 3)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"map_grid: images must be (N, C, H, W), got shape {images.shape}")
    images = images.transpose(0, 2, 3, 1)
    n = len(images)
    if not (len(maps) == len(scores) == n) or (masks is not None and len(masks) != n) or n == 0:
        raise ValueError(f"map_grid: {n} images, {len(maps)} maps, {len(scores)} scores"
                         f"{'' if masks is None else f', {len(masks)} masks'}: need as many of each, at least one")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    top = list(order[:k])
    bottom = [i for i in order[::-1][:k] if i not in top]
    labels = labels or [f"{s:.4g}" for s in scores]
    pair_w = 2 * TILE + GAP
    width = k * pair_w + (k - 1) * 3 * GAP
    rows = [r for r in (top, bottom) if r]
    height = len(rows) * (TILE + CAPTION) + (len(rows) - 1) * 3 * GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, idx in enumerate(rows):
        y = r * (TILE + CAPTION + 3 * GAP)
        for c, i in enumerate(idx):
            x = c * (pair_w + 3 * GAP)
            img = images[i] if images[i].shape[-1] == 3 else np.repeat(images[i][..., :1], 3, axis=-1)
            drawn = overlay(img, maps[i], threshold, floor)
            if masks is not None and np.any(masks[i]):
                img, drawn = outline(img, masks[i]), outline(drawn, masks[i])
            canvas.paste(_tile(np.ascontiguousarray(img)), (x, y))
            canvas.paste(_tile(drawn), (x + TILE + GAP, y))
            draw.text((x + 2, y + TILE + 1), str(labels[i])[:40], fill=(0, 0, 0))
    return np.asarray(canvas)
