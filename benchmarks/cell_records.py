"""Per-cell figures of a bench folder that `noveltykit report` does not print: the training-set
size, the process's peak memory when the cell finished (an upper bound on the cell's need: the
cells the process ran before count), and for a trained detector the normal validation loss after
its first and last epoch and their ratio. Reads results.json only.

Usage: python benchmarks/cell_records.py RUN_DIR [RUN_DIR ...] [--seeds 0,1]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(run: Path, seeds: set[int] | None) -> list[str]:
    cells = json.loads((run / "results.json").read_text())["results"]
    out = []
    for c in sorted(cells, key=lambda c: (c["seed"], c["class"])):
        if seeds is not None and c["seed"] not in seeds:
            continue
        losses = [h["val_loss"] for h in c.get("history") or [] if h.get("val_loss") is not None]
        loss = (f"{losses[0]:.2f} | {losses[-1]:.2f} | {losses[0] / losses[-1]:.1f}x" if losses
                else "- | - | -")
        out.append(f"| {run.name} | {c['class']} | {c['seed']} | {c['n_train']} | "
                   f"{c['process_peak_rss_gib']:.2f} | {loss} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seeds", help="only these seeds, e.g. 0,1")
    args = parser.parse_args()
    seeds = {int(s) for s in args.seeds.split(",")} if args.seeds else None
    print("| run | class | seed | training images | peak GiB | val loss, first epoch | last | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        print("\n".join(rows(run, seeds)))


if __name__ == "__main__":
    main()
