"""A folder of 128x128 surface images with small defects, for the 32 px against full-size comparison.

No dataset reachable here has images larger than 32x32, so this one is synthetic (and says so):
normal images are a woven-looking surface (two gratings near fixed orientations, random phase and
frequency jitter, an illumination gradient and sensor noise); novel ones are the same surface with
one small defect (a thin scratch or a spot, a few pixels across). At 32x32 a 2-pixel scratch is
half a pixel wide, its contrast averaged away; at 128 it is whole. Seeded, written as PNG
(lossless) in the `folder:PATH` layout that `noveltykit bench` and `fit` read.

    python benchmarks/texture_folder.py runs/texture-128
    noveltykit bench --dataset folder:runs/texture-128 --image-size 32 --method feat-knn:size=128 knn ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 128


def surface(rng: np.random.Generator) -> np.ndarray:
    """A normal image, float in [0, 1]: two gratings (warp and weft), light gradient, noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    img = np.full((SIZE, SIZE), 0.5)
    for base_angle in (0.0, np.pi / 2):
        angle = base_angle + rng.normal(0, 0.05)
        period = rng.uniform(5.0, 7.0)
        phase = rng.uniform(0, 2 * np.pi)
        img += 0.12 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    gx, gy = rng.normal(0, 0.1, size=2)
    img += (gx * (xx - SIZE / 2) + gy * (yy - SIZE / 2)) / SIZE
    img += rng.normal(0, 0.04, size=img.shape)
    return img


def add_defect(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One scratch (1-2 px wide, 12-30 px long, any angle) or one spot (radius 2-4 px), darker or brighter."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    cy, cx = rng.uniform(16, SIZE - 16, size=2)
    sign = rng.choice([-1.0, 1.0])
    if rng.random() < 0.5:
        angle, half_len, half_width = rng.uniform(0, np.pi), rng.uniform(6, 15), rng.uniform(0.5, 1.0)
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        mask = (np.abs(along) <= half_len) & (np.abs(across) <= half_width)
    else:
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= rng.uniform(2, 4) ** 2
    out = img.copy()
    out[mask] += sign * 0.35
    return out


def write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), mode="L").save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--test", type=int, default=300, help="normal and novel test images, each")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty: choose a new folder")
    rng = np.random.default_rng(args.seed)
    for i in range(args.train):
        write(args.out / "train" / f"{i:05d}.png", surface(rng))
    for i in range(args.test):
        write(args.out / "test" / "normal" / f"{i:05d}.png", surface(rng))
        write(args.out / "test" / "novel" / f"{i:05d}.png", add_defect(surface(rng), rng))
    print(f"wrote {args.train} training and {2 * args.test} test images ({SIZE}x{SIZE}, PNG) under {args.out}")


if __name__ == "__main__":
    main()
