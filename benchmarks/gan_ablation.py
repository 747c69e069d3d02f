"""GAN design choices judged on a development split built from TRAINING images only.

For one-vs-rest class c: dev-normal = the normal-only validation split; dev-novel = a seeded
sample of other classes' training images (never trained on in one-vs-rest). No test image is
touched, so choices made here leave the test tables honest. Writes one JSON line per run.

    python benchmarks/gan_ablation.py --dataset mnist --classes 8,3 \
        --variant paper:norm=batch,lr=0.002 --variant in2e4:norm=instance,lr=0.0002 --epochs 8
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from noveltykit.data import load_dataset
from noveltykit.data.protocols import dev_split
from noveltykit.detectors.specs import MethodSpec
from noveltykit.analysis.metrics import auroc
from noveltykit.train.gan import GANConfig, score_batches, train_gan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--classes", default="8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", required=True, help="label:key=value,...")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", default="runs/gan_ablation.jsonl")
    args = ap.parse_args()
    ds = load_dataset(args.dataset, progress=False)
    for cls in [int(c) for c in args.classes.split(",")]:
        x, v, x_dev, y_dev = dev_split(ds, cls, args.seed)
        for spec_text in args.variant:
            spec = MethodSpec.parse(spec_text)
            params = {"epochs": args.epochs, **dict(spec.params)}
            cfg = GANConfig(channels=ds.channels, seed=args.seed, **params)
            curve = []

            def monitor(epoch, g):
                s = score_batches(g, x_dev, cfg.score_kind)
                curve.append(auroc(y_dev, s))
                return {"dev_auroc": curve[-1]}

            t0 = time.perf_counter()
            res = train_gan(cfg, x, v, progress=False, on_epoch_end=monitor)
            row = {"dataset": ds.name, "class": cls, "seed": args.seed, "variant": spec.detector,
                   "params": params, "seconds": time.perf_counter() - t0,
                   "dev_auroc_last": curve[-1], "dev_auroc_curve": curve,
                   "val_loss": [h["val_loss"] for h in res.history],
                   "d_reinits": sum(h["d_reinits"] for h in res.history),
                   "images_per_s": float(np.mean([h["images_per_s"] for h in res.history]))}
            print(f"{ds.name} class {cls} {spec.detector}: dev AUROC last {curve[-1]:.4f} "
                  f"curve {[round(c, 3) for c in curve]} ({row['seconds']:.0f} s)", flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
