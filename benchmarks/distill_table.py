"""Tables V and VI for this project, from `noveltykit bench` folders of distillation runs.

One row per method: mean one-vs-rest AUROC over the classes that every listed method covers, the
drop from the teacher in AUROC points (teacher minus method, x100), and the generator's
parameters, MACs and compression ratios against the teacher, counted by `nets.profile`.
Every `kdgan` record also holds its own teacher's AUROC on the same cell; the script checks that it
equals the teacher column, so the table compares each student with the very teacher it learnt from.
Usage: python benchmarks/distill_table.py runs/kd-mnist [more folders] --teacher ede-gan \
    --methods ede-gan:width=2,epochs=16 kdgan:structure=p23,width=2 [--seed 0]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from noveltykit.nets.profile import profile_gan


def load(folders: list[str], seed: int) -> dict[tuple[str, int], dict]:
    cells = {}
    for folder in folders:
        for r in json.loads((Path(folder) / "results.json").read_text())["results"]:
            if r["seed"] == seed:
                cells[(r["method"], r["class"])] = r
    return cells


def generator_size(record: dict, channels: int) -> tuple[int, int]:
    width = record["params"].get("width") or 64
    variant = "ed-gan" if record["detector"] == "ed-gan" else "ede-gan"
    _, params, macs = profile_gan(variant, width, channels)[0]
    return params, macs


def table(cells: dict, teacher: str, methods: list[str]) -> str:
    labels = [teacher] + methods
    classes = sorted(c for (m, c) in cells if m == teacher and all((l, c) in cells for l in labels))
    if not classes:
        raise SystemExit(f"no class has all of {labels}")
    # Each student's own teacher is the teacher column's model. Scored twice on a GPU, one model's
    # AUROC can move in the 6th decimal (reductions are not bitwise repeatable); another training
    # run of the teacher moves it by 1e-3 or more.
    for m in methods:
        for c in classes:
            own = cells[(m, c)].get("teacher_auroc")
            if own is not None and abs(own - cells[(teacher, c)]["auroc"]) > 1e-5:
                raise SystemExit(f"{m} class {c}: its teacher scored {own}, the teacher column "
                                 f"{cells[(teacher, c)]['auroc']}: not the same teacher")
    channels = 3 if cells[(teacher, classes[0])]["dataset"].startswith("cifar") else 1
    t_params, t_macs = generator_size(cells[(teacher, classes[0])], channels)
    t_mean = np.mean([cells[(teacher, c)]["auroc"] for c in classes])
    lines = [f"Classes {', '.join(map(str, classes))} (seed {cells[(teacher, classes[0])]['seed']}, "
             f"{cells[(teacher, classes[0])]['dataset']}); generator size on a {channels}x32x32 image.", "",
             "| method | mean AUROC | drop from teacher (points) | classes above teacher | "
             "generator params | MACs | params ratio | MACs ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for m in labels:
        aurocs = [cells[(m, c)]["auroc"] for c in classes]
        params, macs = generator_size(cells[(m, classes[0])], channels)
        above = sum(cells[(m, c)]["auroc"] > cells[(teacher, c)]["auroc"] for c in classes)
        drop = "-" if m == teacher else f"{100 * (t_mean - np.mean(aurocs)):+.2f}"
        wins = "-" if m == teacher else f"{above} of {len(classes)}"
        lines.append(f"| {m} | {np.mean(aurocs):.4f} | {drop} | {wins} | {params / 1e6:.4f}M | "
                     f"{macs / 1e6:.3f}M | {t_params / params:.2f}x | {t_macs / macs:.2f}x |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+", help="bench output folders (their results.json are merged)")
    ap.add_argument("--teacher", default="ede-gan", help="the teacher's method label")
    ap.add_argument("--methods", nargs="+", required=True, help="student method labels, as in the bench")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(table(load(args.folders, args.seed), args.teacher, args.methods))


if __name__ == "__main__":
    main()
