"""A figure of anomaly maps by defect kind, for an MVTec-layout folder (docs/maps.md).

Fits a map detector on the folder's `train/good` images (it holds out its own share for the
thresholds), then draws, for each test kind (`good` and every defect folder), `--per-kind` of its
images chosen at random (seeded) beside their overlays, masks outlined in cyan: one row a kind,
most novel first. Captions: the kind and the image score.

    python benchmarks/maps_by_kind.py runs/surfaces/grain --method patchcore --out docs/figures/patchcore-grain-kinds.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from noveltykit.analysis.heatmaps import map_grid
from noveltykit.data import load_dataset
from noveltykit.detectors import make
from noveltykit.detectors.specs import MethodSpec

TITLE = 14  # pixels above each row for its kind


def kind_rows(det, ds, per_kind: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """(kind, its row as map_grid draws it) for each kind of test image, `good` first."""
    kinds = sorted(set(ds.test_kinds), key=lambda k: (k != "good", k))
    rows = []
    for kind in kinds:
        idx = rng.permutation(np.flatnonzero(ds.test_kinds == kind))[:per_kind]
        images = ds.test_x[idx]
        scores = det.decision_function(images)
        masks = ds.test_masks[idx] if ds.test_masks is not None else None
        grid = map_grid(images, det.anomaly_map(images), scores, det.pixel_threshold_, det.map_floor_,
                        masks=masks, labels=[f"{kind} {s:.3g}" for s in scores], k=per_kind)
        rows.append((kind, grid))
    return rows


def stack(rows: list[tuple[str, np.ndarray]]) -> Image.Image:
    width = max(grid.shape[1] for _, grid in rows)
    height = sum(grid.shape[0] + TITLE for _, grid in rows)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw, y = ImageDraw.Draw(canvas), 0
    for kind, grid in rows:
        draw.text((2, y + 1), kind, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(grid), (0, y + TITLE))
        y += grid.shape[0] + TITLE
    return canvas


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="an MVTec-layout folder (train/good, test/KIND, ground_truth/KIND)")
    ap.add_argument("--method", default="patchcore", help="a detector with maps (default patchcore)")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--per-kind", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args(argv)
    ds = load_dataset(f"folder:{args.folder}", size=args.image_size, progress=False)
    spec = MethodSpec.parse(args.method)
    det = make(spec.detector, **dict(spec.params), random_state=args.seed)
    if not det.produces_maps:
        ap.error(f"{args.method} gives no anomaly maps")
    det.fit(ds.train_x)
    figure = stack(kind_rows(det, ds, args.per_kind, np.random.default_rng(args.seed)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(f"{args.out}: {args.method} on {args.folder}, {args.per_kind} images a kind")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
