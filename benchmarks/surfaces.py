"""Synthetic surfaces with located defects and their masks, in the MVTec AD layout (issue 34).

No MVTec copy is reachable here, so this benchmark is generated (and says so), seeded, never
committed. Each texture is one category, written as

    OUT/<texture>/train/good/0000.png           normal surfaces
    OUT/<texture>/test/good/0000.png            normal surfaces
    OUT/<texture>/test/<defect>/0000.png        one defect each
    OUT/<texture>/ground_truth/<defect>/0000_mask.png   255 where the defect is, else 0

so the same commands serve a user's MVTec copy: `noveltykit bench --dataset folder:OUT/woven ...`.

Textures (RGB, `--size` px, 256 by default), each with random phase, scale, tint, an illumination
gradient and sensor noise, so no two normal images are alike:
    woven     two gratings near fixed orientations (warp and weft)
    grain     brushed or wood-like: noise stretched along one direction, with slow bands
    tiles     a grid of tiles, each its own shade, between darker grout lines
Defects, each a few to a few tens of pixels across and placed anywhere but the border:
    scratch   a thin straight line, brighter or darker
    spot      a round blob, brighter or darker
    cut       a thin dark gap across which the texture is shifted
    stain     an irregular colour tint
    missing   a patch where the pattern is gone (the surface's mean colour, its noise kept)

    python benchmarks/surfaces.py runs/surfaces            # 3 textures x (200 + 50 + 5 x 20)
    noveltykit bench --dataset folder:runs/surfaces/woven --image-size 256 --method patchcore --out runs/pc-woven
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

TEXTURES = ("woven", "grain", "tiles")
DEFECTS = ("scratch", "spot", "cut", "stain", "missing")


# --- normal surfaces: float RGB in about [0, 1], shape (size, size, 3) ------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy, xx


def _finish(grey: np.ndarray, rng: np.random.Generator, tint_spread: float = 0.05) -> np.ndarray:
    """A grey pattern -> a tinted RGB surface with an illumination gradient and sensor noise."""
    size = grey.shape[0]
    yy, xx = _grid(size)
    gx, gy = rng.normal(0, 0.1, size=2)
    grey = grey + (gx * (xx - size / 2) + gy * (yy - size / 2)) / size
    tint = 1 + rng.normal(0, tint_spread, size=3)
    rgb = grey[..., None] * tint
    return rgb + rng.normal(0, 0.03, size=rgb.shape)


def woven(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    img = np.full((size, size), 0.5)
    for base in (0.0, np.pi / 2):
        angle, period, phase = base + rng.normal(0, 0.05), rng.uniform(7.0, 9.0), rng.uniform(0, 2 * np.pi)
        img += 0.12 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    return _finish(img, rng)


def grain(size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 1, size=(size, size))
    streaks = ndimage.gaussian_filter(noise, sigma=(0.7, 12.0), mode="wrap")  # long along x
    streaks /= streaks.std() + 1e-9
    angle = rng.normal(0, 4.0)  # degrees: the brushing direction wanders a little
    streaks = ndimage.rotate(streaks, angle, reshape=False, mode="reflect")
    yy, _ = _grid(size)
    bands = np.sin(2 * np.pi * yy / rng.uniform(40, 70) + rng.uniform(0, 2 * np.pi))
    return _finish(0.5 + 0.07 * streaks + 0.05 * bands, rng)


def tiles(size: int, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(28, 36)
    oy, ox = rng.uniform(0, period, size=2)
    yy, xx = _grid(size)
    ty, tx = np.floor((yy + oy) / period).astype(int), np.floor((xx + ox) / period).astype(int)
    shades = rng.normal(0, 0.05, size=(ty.max() + 1, tx.max() + 1))
    img = 0.55 + shades[ty, tx]
    dy, dx = np.abs(((yy + oy) % period) - period / 2), np.abs(((xx + ox) % period) - period / 2)
    grout = np.maximum(dy, dx) > period / 2 - 1.5  # 3 px lines between tiles
    img = np.where(grout, 0.3, img)
    return _finish(ndimage.gaussian_filter(img, 0.6), rng)


SURFACES = {"woven": woven, "grain": grain, "tiles": tiles}


# --- defects: (image, mask) from a normal image ------------------------------------------------------
def _centre(size: int, rng: np.random.Generator, margin: int) -> tuple[float, float]:
    return tuple(rng.uniform(margin, size - margin, size=2))


def _line(size: int, rng: np.random.Generator, half_len: float, half_width: float) -> np.ndarray:
    yy, xx = _grid(size)
    cy, cx = _centre(size, rng, int(half_len) + 8)
    angle = rng.uniform(0, np.pi)
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    return (np.abs(along) <= half_len) & (np.abs(across) <= half_width)


def _blob(size: int, rng: np.random.Generator, radius: float, rough: float) -> np.ndarray:
    """A disc of about `radius`, its edge made irregular by smoothed noise (`rough` 0 = round)."""
    yy, xx = _grid(size)
    cy, cx = _centre(size, rng, int(radius * 1.5) + 8)
    r = np.hypot(yy - cy, xx - cx) / radius
    wobble = ndimage.gaussian_filter(rng.normal(0, 1, size=(size, size)), sigma=max(radius / 3, 1))
    wobble /= np.abs(wobble).max() + 1e-9
    return r + rough * wobble < 1


def scratch(img, rng):
    size = img.shape[0]
    mask = _line(size, rng, rng.uniform(10, 40) * size / 256, rng.uniform(0.6, 1.5))
    out = img.copy()
    out[mask] += rng.choice([-1.0, 1.0]) * rng.uniform(0.25, 0.4)
    return out, mask


def spot(img, rng):
    mask = _blob(img.shape[0], rng, rng.uniform(3, 10) * img.shape[0] / 256, 0.0)
    out = img.copy()
    out[mask] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.35)
    return out, mask


def cut(img, rng):
    size = img.shape[0]
    mask = _line(size, rng, rng.uniform(15, 45) * size / 256, rng.uniform(1.0, 2.0))
    shifted = np.roll(img, shift=tuple(rng.integers(2, 5, size=2)), axis=(0, 1))
    grown = ndimage.binary_dilation(mask, iterations=3)
    side = grown & ~mask
    out = img.copy()
    out[side] = shifted[side]  # the texture no longer lines up across the gap
    out[mask] = 0.12 + 0.03 * rng.normal(size=(int(mask.sum()), 3))
    return out, grown


def stain(img, rng):
    mask = _blob(img.shape[0], rng, rng.uniform(10, 25) * img.shape[0] / 256, 0.6)
    colour = rng.uniform(0, 1, size=3)
    alpha = rng.uniform(0.3, 0.5)
    out = img.copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out, mask


def missing(img, rng):
    mask = _blob(img.shape[0], rng, rng.uniform(10, 22) * img.shape[0] / 256, 0.3)
    mean = img.reshape(-1, 3).mean(0)
    out = img.copy()
    out[mask] = mean + rng.normal(0, 0.03, size=(int(mask.sum()), 3))
    return out, mask


DEFECT_MAKERS = {"scratch": scratch, "spot": spot, "cut": cut, "stain": stain, "missing": missing}


# --- writing ------------------------------------------------------------------------------------------
def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def as_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_texture(out: Path, texture: str, size: int, n_train: int, n_good: int, n_defect: int,
                  seed: int) -> None:
    # one stream per texture: adding a texture never changes another's images
    rng = np.random.default_rng([seed, TEXTURES.index(texture)])
    make = SURFACES[texture]
    for i in range(n_train):
        save_png(out / "train" / "good" / f"{i:04d}.png", as_uint8(make(size, rng)))
    for i in range(n_good):
        save_png(out / "test" / "good" / f"{i:04d}.png", as_uint8(make(size, rng)))
    for defect in DEFECTS:
        for i in range(n_defect):
            img, mask = DEFECT_MAKERS[defect](make(size, rng), rng)
            save_png(out / "test" / defect / f"{i:04d}.png", as_uint8(img))
            save_png(out / "ground_truth" / defect / f"{i:04d}_mask.png", mask.astype(np.uint8) * 255)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--textures", default=",".join(TEXTURES), help=f"comma-separated, of {', '.join(TEXTURES)}")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--good", type=int, default=50, help="normal test images")
    ap.add_argument("--per-defect", type=int, default=20, help="test images of each defect kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    textures = [t.strip() for t in args.textures.split(",") if t.strip()]
    unknown = sorted(set(textures) - set(TEXTURES))
    if unknown:
        ap.error(f"unknown texture(s) {unknown}; choose from {', '.join(TEXTURES)}")
    if args.size < 64:
        ap.error("--size: at least 64 px, so the defects fit inside the border margin")
    for texture in textures:
        folder = args.out / texture
        if folder.exists() and any(folder.iterdir()):
            ap.error(f"{folder} is not empty: choose a new folder")
        write_texture(folder, texture, args.size, args.train, args.good, args.per_defect, args.seed)
        print(f"{folder}: {args.train} training, {args.good} good and {len(DEFECTS)} x {args.per_defect} "
              f"defective test images, {args.size} px, with masks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
