"""Pick the students' learning rate for one dataset from a development-split study, by a fixed rule.

Reads the JSON lines of `distill_ablation.py` (training images only; no test label is read) and
prints the learning rate whose runs have the higher mean last-epoch dev AUROC, over every class and
every kind of student (alone, distilled) that was run at each rate. A tie keeps the `student`
preset's rate. The rule is written before the runs, so the choice is mechanical.

    python benchmarks/student_lr_choice.py runs/dev-fashion-mnist.jsonl
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

from noveltykit.train.gan import PRESETS


def choose(rows: list[dict]) -> tuple[float, dict[float, float]]:
    by_lr = defaultdict(list)
    for row in rows:
        by_lr[row["lr"]].append(row["dev_auroc_last"])
    if len(by_lr) < 2:
        raise ValueError(f"need runs at two learning rates or more, got {sorted(by_lr)}")
    means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
    preset = PRESETS["student"]["lr"]
    best = max(means, key=lambda lr: (round(means[lr], 6), lr == preset))
    return best, means


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl", help="rows written by distill_ablation.py for one dataset and student width")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    if len({r["dataset"] for r in rows}) != 1:
        raise SystemExit("give the rows of one dataset")
    best, means = choose(rows)
    for lr, m in sorted(means.items()):
        print(f"# lr {lr:g}: mean dev AUROC {m:.4f} over {sum(r['lr'] == lr for r in rows)} runs")
    print(f"{best:g}")


if __name__ == "__main__":
    main()
