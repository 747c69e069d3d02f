"""Student choices for P-KDGAN (learning rate, epochs), judged on a development split of TRAINING
images only: the same split as `gan_ablation.py` (normal validation images vs other classes'
training images), so the test tables stay honest.

Each variant is a detector spec (`ede-gan:width=2,epochs=16` = the student alone,
`kdgan:structure=2,width=2,epochs=8` = a distilled one); its dev AUROC is recorded after every
epoch. Each run is a trial of `noveltykit.experiments.sweep` (the same split, fit and record as
`noveltykit sweep`), filed in OUT's `.trials/` folder beside it, so a rerun skips what is done and
appends only new rows. Distilled students take their teacher from `--teachers`, the teacher cache of a
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
from pathlib import Path

from noveltykit.data import load_dataset
from noveltykit.detectors.ede_gan import _GANDetector
from noveltykit.experiments.sweep import SweepConfig, TrainOnly, finished_trial, run_trial


def resolved_lr(detector, channels: int) -> float:
    """The learning rate a variant trained with (a GAN's comes from its preset unless overridden;
    None for a detector that is not trained)."""
    return detector.config(channels).lr if isinstance(detector, _GANDetector) else getattr(detector, "lr", None)


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
    classes = [int(c) for c in args.classes.split(",")]
    trials = Path(args.out).with_suffix(".trials")
    cfg = SweepConfig(dataset=args.dataset, method=args.variant[0], variants=args.variant[1:], grid={},
                      classes=classes, out=str(trials), seed=args.seed, device=args.device,
                      teacher_cache=args.teachers, curves=True)  # the studies' records keep their curves
    view = TrainOnly(load_dataset(args.dataset, progress=False))
    for cls in classes:
        for point in cfg.points:
            if finished_trial(view, cfg, point, cls, trials) is not None:
                continue  # its row was appended when it ran
            r = run_trial(view, cfg, point, cls, trials, extra=lambda d: {"lr": resolved_lr(d, view.channels)})
            row = {"dataset": r["dataset"], "class": cls, "seed": args.seed, "variant": point.label,
                   **{k: r[k] for k in r if k in ("lr", "device", "seconds", "dev_auroc_last", "dev_auroc_curve",
                                                 "val_loss") or k.endswith("_dev_auroc")}}
            print(f"{view.name} class {cls} {point.label}: dev AUROC last {r['dev_auroc_last']:.4f} "
                  f"curve {[round(c, 3) for c in r['dev_auroc_curve']]} ({r['seconds']:.0f} s)", flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
