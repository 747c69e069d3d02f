"""The ablation chain's table (`ablation_chain.sh`): one row per step, the incumbent it started
from, each candidate's development AUROC per class and mean, the step's choice and what it gained
over the incumbent. Reads the steps' `sweep.json` only (development split: no test image).

    python benchmarks/ablation_table.py runs/ablation-cifar10-jpeg [more chain folders]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

STEPS = ("backbone", "stages", "tta", "finetune", "ensemble")


def step_rows(sweep: dict, first_step: bool) -> list[str]:
    """A later step's incumbent is the step before's choice: its seconds are that step's (a rerun
    of it reads the record or loads the fit, and takes none of its own)."""
    classes = [str(c) for c in sweep["config"]["classes"]]
    points, chosen = sweep["points"], sweep["chosen"]["index"]
    incumbent = points[0]["mean"]  # the method given first: the step before's choice
    rows = []
    for i, p in enumerate(points):
        cells = " | ".join(f"{p['dev_auroc'][c]:.4f}" for c in classes)
        mark = "**" if i == chosen else ""
        gain = f"{p['mean'] - incumbent:+.4f}" if i else "(incumbent)"
        seconds = "as above" if i == 0 and not first_step else f"{p['seconds']:.0f}"
        rows.append(f"{mark}`{p['label']}`{mark} | {cells} | {mark}{p['mean']:.4f}{mark} | {gain} | {seconds}")
    return rows


def chain_table(folder: Path) -> str:
    done = [s for s in STEPS if (folder / s / "sweep.json").exists()]
    if not done:
        raise SystemExit(f"{folder}: no finished step (looked for {', '.join(STEPS)})")
    first = json.loads((folder / done[0] / "sweep.json").read_text())
    classes = [str(c) for c in first["config"]["classes"]]
    lines = [f"### {first['config']['dataset']}: development split, classes {', '.join(classes)}, "
             f"seed {first['config']['seed']} (`{folder}`)", "",
             "| step | spec | " + " | ".join(f"class {c}" for c in classes)
             + " | mean | against the incumbent | fit + dev scoring, s (all classes) |",
             "|---|---|" + "---|" * len(classes) + "---|---|---|"]
    for step in done:
        sweep = json.loads((folder / step / "sweep.json").read_text())
        for row in step_rows(sweep, first_step=step == done[0]):
            lines.append(f"| {step} | {row} |")
    left = [s for s in STEPS if s not in done]
    if left:
        lines += ["", f"Steps not yet run: {', '.join(left)}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("\n\n".join(chain_table(f) for f in args.folders))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
