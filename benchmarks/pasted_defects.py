"""Real images with pasted defects and their masks, in the MVTec AD layout (issue 34).

Normal: one class of a dataset (CIFAR-10's JPEG copy or Fashion-MNIST), upsampled to `--size`.
Novel: other test images of the same class with a patch cut from another test image pasted in
(CutPaste-style: random size, aspect, position and blend), the mask being the patch. Training
images are the class's training images only; every pasted patch comes from the test split, so no
test pixel is ever trained on. Seeded; written as PNG, never committed:

    OUT/train/good/0000.png              the class's training images
    OUT/test/good/0000.png               half the class's test images
    OUT/test/pasted/0000.png             the other half, each with one pasted patch
    OUT/ground_truth/pasted/0000_mask.png

    python benchmarks/pasted_defects.py runs/pasted-cifar-0 --dataset cifar10-jpeg --cls 0
    noveltykit bench --dataset folder:runs/pasted-cifar-0 --image-size 128 --method patchcore --out runs/pc-pasted
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from noveltykit.data import load_dataset


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, C, h, w) -> uint8 (N, size, size, 3), bicubic; grey images become RGB."""
    out = []
    for img in images:
        hwc = np.moveaxis(img, 0, -1)
        pil = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc).convert("RGB")
        out.append(np.asarray(pil.resize((size, size), Image.BICUBIC)))
    return np.stack(out)


def paste(target: np.ndarray, source: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One patch of `source` (10-30% of the side, aspect 1/2-2, any place) pasted into `target`
    at another place, blended with opacity 0.8-1; returns the image and its 0/1 mask."""
    size = target.shape[0]
    area = rng.uniform(0.1, 0.3) ** 2 * size * size
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    h = int(np.clip(round(np.sqrt(area * aspect)), 4, size - 2))
    w = int(np.clip(round(np.sqrt(area / aspect)), 4, size - 2))
    sy, sx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    ty, tx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    alpha = rng.uniform(0.8, 1.0)
    out = target.astype(np.float64)
    patch = source[sy:sy + h, sx:sx + w].astype(np.float64)
    out[ty:ty + h, tx:tx + w] = (1 - alpha) * out[ty:ty + h, tx:tx + w] + alpha * patch
    mask = np.zeros((size, size), np.uint8)
    mask[ty:ty + h, tx:tx + w] = 1
    return out.round().clip(0, 255).astype(np.uint8), mask


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", default="cifar10-jpeg", help="cifar10-jpeg or fashion-mnist (or any named dataset)")
    ap.add_argument("--cls", type=int, default=0, help="the normal class")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--train", type=int, default=1000, help="training images (at most the class's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty: choose a new folder")
    ds = load_dataset(args.dataset, progress=False)
    if not 0 <= args.cls < len(ds.class_names):
        ap.error(f"--cls: {ds.name} has classes 0..{len(ds.class_names) - 1}")
    rng = np.random.default_rng(args.seed)
    train = np.flatnonzero(ds.train_y == args.cls)
    train = rng.permutation(train)[:args.train]
    test = rng.permutation(np.flatnonzero(ds.test_y == args.cls))
    good, novel = test[: len(test) // 2], test[len(test) // 2:]
    for i, img in enumerate(upsample(ds.train_x[train], args.size)):
        save_png(args.out / "train" / "good" / f"{i:04d}.png", img)
    for i, img in enumerate(upsample(ds.test_x[good], args.size)):
        save_png(args.out / "test" / "good" / f"{i:04d}.png", img)
    others = np.setdiff1d(np.arange(len(ds.test_y)), novel)  # a patch never comes from its own image
    sources = upsample(ds.test_x[rng.choice(others, size=len(novel), replace=False)], args.size)
    for i, (img, src) in enumerate(zip(upsample(ds.test_x[novel], args.size), sources)):
        pasted, mask = paste(img, src, rng)
        save_png(args.out / "test" / "pasted" / f"{i:04d}.png", pasted)
        save_png(args.out / "ground_truth" / "pasted" / f"{i:04d}_mask.png", mask * 255)
    print(f"{args.out}: {ds.name} class {args.cls} ({ds.class_names[args.cls]}), {len(train)} training, "
          f"{len(good)} good and {len(novel)} pasted test images at {args.size} px, with masks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
