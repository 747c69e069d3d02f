"""Student choices for P-KDGAN (learning rate, epochs), judged on a development split of TRAINING
images only: the same split as `gan_ablation.py` (normal validation images vs other classes'
training images), so the test tables stay honest.

Each variant is a detector spec (`ede-gan:width=2,epochs=16` = the student alone,
`kdgan:structure=2,width=2,epochs=8` = a distilled one); its dev AUROC is recorded after every
epoch. Distilled students take their teacher from `--teachers`, the teacher cache of a
`noveltykit bench` run on the same classes (one-vs-rest, same seed and validation split), or
train it there. Writes one JSON line per run.

    python benchmarks/distill_ablation.py --dataset mnist --classes 0,1 --teachers runs/kd-mnist/teachers \
        --variant ede-gan:width=2,epochs=16 --variant kdgan:structure=2,width=2,epochs=8,lr=0.002

Any registered detector is a variant, so the same split judges other families' choices too, e.g.
`--variant deep-svdd --variant deep-svdd:lr=0.0001`.
"""
from __future__ import annotations

import argparse
import json
import time

from noveltykit.data import load_dataset
from noveltykit.data.protocols import dev_split  # the same development split as gan_ablation.py
from noveltykit.detectors import make
from noveltykit.detectors.context import RunContext
from noveltykit.detectors.gan import _GANDetector
from noveltykit.eval.methods import MethodSpec
from noveltykit.eval.metrics import auroc


def resolved_lr(detector, channels: int) -> float:
    """The learning rate a variant trained with (a GAN's comes from its preset unless overridden)."""
    return detector.config(channels).lr if isinstance(detector, _GANDetector) else detector.lr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--classes", default="0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", required=True, help="detector:key=value,...")
    ap.add_argument("--teachers", help="teacher cache folder (e.g. a bench run's OUT/teachers)")
    ap.add_argument("--device", help="cpu or cuda: where every variant (and its teacher) trains; "
                                     "not part of the variant's label")
    ap.add_argument("--out", default="runs/distill_ablation.jsonl")
    args = ap.parse_args()
    ds = load_dataset(args.dataset, progress=False)
    for cls in [int(c) for c in args.classes.split(",")]:
        x, v, x_dev, y_dev = dev_split(ds, cls, args.seed)
        for spec_text in args.variant:
            spec = MethodSpec.parse(spec_text)
            detector = make(spec.detector, **{"random_state": args.seed, **dict(spec.params)})
            curve = []
            detector.configure(RunContext(
                device=args.device, teacher_cache=args.teachers,
                monitor=lambda score: curve.append(auroc(y_dev, score(x_dev))) or {}))
            t0 = time.perf_counter()
            detector.fit(x, v)
            row = {"dataset": ds.name, "class": cls, "seed": args.seed, "variant": spec.label,
                   "lr": resolved_lr(detector, x.shape[1]), "device": detector.context.torch_device,
                   "seconds": time.perf_counter() - t0, "dev_auroc_last": curve[-1],
                   "dev_auroc_curve": curve, "val_loss": [h["val_loss"] for h in detector.history_]}
            for role, other in detector.companions().items():  # the teacher: the bar the student aims at
                row[f"{role}_dev_auroc"] = auroc(y_dev, other.decision_function(x_dev))
            print(f"{ds.name} class {cls} {spec.label}: dev AUROC last {curve[-1]:.4f} "
                  f"curve {[round(c, 3) for c in curve]} ({row['seconds']:.0f} s)", flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
