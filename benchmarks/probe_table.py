"""One row per finished probe (`noveltykit probe` output folders holding probe.json):

    python benchmarks/probe_table.py docs/results/gan-lab-probe/probe/*/*/probe.json

rho_adv is the mean L2 norm of the perturbations that flipped the detector's own decision (in the
images' [-1, 1] scale), over the flipped images only. The two directions are apart, by the
detector's own decision before the attack: an image it called normal and was pushed over the
threshold (an alarm raised), and one it called novel and was pushed under (a novelty hidden);
each with how many flipped and the median L2 of those that did. The model is named by the
probe's folder (`probe/<attack>/<method>/`, as benchmarks/gan_lab.sh writes them).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def flips(rows: list[dict]) -> str:
    l2 = [r["l2"] for r in rows if r["flipped"]]
    return f"{len(l2)}/{len(rows)} ({fmt(statistics.median(l2) if l2 else None)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("probes", nargs="+", help="probe.json files")
    args = ap.parse_args()
    print("| model | attack | called normal: flipped (median L2) | called novel: flipped (median L2) | rho_adv | rho_adv / ‖x‖ |")
    print("|---|---|---|---|---|---|")
    for path in sorted(args.probes):
        rec = json.load(open(path))
        cells = [flips([r for r in rec["rows"] if (r["score_before"] > r["threshold"]) == called_novel])
                 for called_novel in (False, True)]
        print(f"| {Path(path).parent.name} | {rec['attack']} | {cells[0]} | {cells[1]} | {fmt(rec['rho_adv'])} "
              f"| {fmt(rec['rho_adv_normalised'])} |")


if __name__ == "__main__":
    main()
