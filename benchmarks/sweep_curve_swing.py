"""How much a sweep trial's dev AUROC moves from epoch to epoch, for trials that recorded the curve
(`noveltykit sweep --curves`): the yardstick for how small a difference between points means nothing.

    python benchmarks/sweep_curve_swing.py runs/sweep-selfsup-fashion-mnist
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main():
    for folder in sys.argv[1:]:
        for path in sorted(Path(folder, "trials").glob("*.json")):
            trial = json.loads(path.read_text())
            curve = np.array(trial.get("dev_auroc_curve") or [])
            if len(curve) < 2:
                continue
            step = np.abs(np.diff(curve))
            print(f"{trial['spec']} class {trial['class']}: range {curve.min():.4f}-{curve.max():.4f}, "
                  f"epoch-to-epoch change median {np.median(step):.4f} max {step.max():.4f}, "
                  f"std of the last 10 epochs {curve[-10:].std():.4f}")


if __name__ == "__main__":
    main()
