"""Pick a student setting from a development-split study, by a fixed rule.

Reads the JSON lines of `distill_ablation.py` (training images only; no test label is read) and
prints the setting whose runs have the higher mean last-epoch dev AUROC, over every class (and
every kind of student) run with it. The rule is written before the runs, so the choice is mechanical.

  --by lr       the learning rate; a tie keeps the `student` preset's rate
  --by variant  the variant label; a tie keeps the one listed first (the incumbent). With --alone,
                also print the student-alone spec of the same budget: the same width and settings,
                as many epochs as the two progressive steps together.

    python benchmarks/dev_choice.py runs/dev-fashion-mnist.jsonl
    python benchmarks/dev_choice.py runs/dev-budget.jsonl --by variant --alone
    python benchmarks/dev_choice.py runs/dsvdd-dev-mnist.jsonl runs/dsvdd-dev-cifar10-jpeg.jsonl --by variant

Several files pool their runs; `--by variant` may pool datasets (one default for all of them),
`--by lr` may not (a learning rate is chosen per dataset).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

from noveltykit.detectors.specs import MethodSpec
from noveltykit.experiments.sweep import choose_by_rule
from noveltykit.train.gan import BUDGETS, PRESETS


def choose(rows: list[dict], by: str = "lr", incumbent=None) -> tuple[object, dict]:
    groups = defaultdict(list)  # insertion order = the order the rows list them
    for row in rows:
        groups[row[by]].append(row["dev_auroc_last"])
    if len(groups) < 2:
        raise ValueError(f"need runs of two settings or more, got {list(groups)}")
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    if incumbent is None:
        incumbent = PRESETS["student"]["lr"] if by == "lr" else next(iter(groups))
    if by == "variant":  # the sweep's rule, with the incumbent listed first (a tie keeps it)
        order = sorted(groups, key=lambda k: k != incumbent)
        return order[choose_by_rule([{"label": k, "aurocs": groups[k]} for k in order], "mean-dev-auroc")], means
    best = max(means, key=lambda k: (round(means[k], 6), k == incumbent))
    return best, means


def alone_spec(kdgan_label: str) -> str:
    """`kdgan:structure=p23,width=1,epochs=24,lr=0.002` -> `ede-gan:width=1,epochs=48,lr=0.002`."""
    spec = MethodSpec.parse(kdgan_label)
    params = dict(spec.params)
    if spec.detector != "kdgan" or str(params.pop("structure", "p23")) not in ("p23", "p24"):
        raise ValueError(f"{kdgan_label}: not a progressive kdgan student")
    per_step = params.pop("epochs", None)
    if per_step is None:
        per_step = BUDGETS[params.get("budget", "cpu")]["epochs"]
    params = {"width": params.pop("width", 2), "epochs": 2 * per_step, **params}
    return "ede-gan:" + ",".join(f"{k}={v}" for k, v in params.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl", nargs="+", help="rows written by distill_ablation.py (one dataset for --by lr)")
    ap.add_argument("--by", default="lr", choices=["lr", "variant"])
    ap.add_argument("--alone", action="store_true", help="--by variant: also the student-alone spec")
    args = ap.parse_args()
    rows = [json.loads(line) for path in args.jsonl for line in open(path) if line.strip()]
    if args.by == "lr" and len({r["dataset"] for r in rows}) != 1:
        raise SystemExit("--by lr: give the rows of one dataset")
    best, means = choose(rows, args.by)
    for k, m in means.items():
        print(f"# {k}: mean dev AUROC {m:.4f} over {sum(r[args.by] == k for r in rows)} runs")
    print(f"{best:g}" if args.by == "lr" else best)
    if args.alone:
        print(alone_spec(best))


if __name__ == "__main__":
    main()
