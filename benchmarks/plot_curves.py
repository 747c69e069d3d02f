"""Per-epoch curves of several methods on one class, from a bench folder run with --curves
(P-KDGAN Figures 1, 5 and 6 style): the diagnostic test AUROC and the normal-validation loss.
The test AUROC is drawn, never used: a cross marks the epoch the validation loss would select.

Usage: python benchmarks/plot_curves.py runs/gan-study-mnist --class 3 --out docs/figures/x.png
  [--methods SUBSTRING ...] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def short_labels(methods: list[str]) -> list[str]:
    """Method labels without the parameters they all share."""
    parts = [m.split(":", 1) for m in methods]
    params = [p[1].split(",") if len(p) > 1 else [] for p in parts]
    shared = set.intersection(*(set(p) for p in params)) if len(methods) > 1 else set()
    return [p[0] + (":" + ",".join(x for x in ps if x not in shared) if set(ps) - shared else "")
            for p, ps in zip(parts, params)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--class", dest="cls", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="*", help="keep methods whose label contains one of these")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    results = json.loads((Path(args.run) / "results.json").read_text())["results"]
    rows = [r for r in results if r["class"] == args.cls and r["seed"] == args.seed and r.get("history")
            and "diagnostic_test_auroc" in r["history"][0]
            and (not args.methods or any(m in r["method"] for m in args.methods))]
    if not rows:
        raise SystemExit(f"no per-epoch curves for class {args.cls} seed {args.seed} in {args.run}")
    labels = short_labels([r["method"] for r in rows])
    fig, (ax_auc, ax_val) = plt.subplots(1, 2, figsize=(11, 4.6))
    for r, label in zip(rows, labels):
        h = r["history"]
        epochs = [e["epoch"] + 1 for e in h]
        chosen = min(range(len(h)), key=lambda j: h[j]["val_loss"])
        line, = ax_auc.plot(epochs, [e["diagnostic_test_auroc"] for e in h], marker=".", label=label)
        ax_auc.plot(epochs[chosen], h[chosen]["diagnostic_test_auroc"], "x", c=line.get_color(), ms=9)
        ax_val.plot(epochs, [e["val_loss"] for e in h], marker=".", c=line.get_color())
    ax_auc.set(xlabel="epoch", ylabel="test AUROC", title="test AUROC (diagnostic; x = validation's choice)")
    ax_val.set(xlabel="epoch", ylabel="loss", yscale="log", title="normal-validation loss (what selects)")
    for ax in (ax_auc, ax_val):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(fontsize=7, loc="lower center", ncol=min(4, len(rows)))
    common = rows[0]["method"].split(":", 1)[-1].split(",")
    shared = [p for p in common if all(p in r["method"].split(":", 1)[-1].split(",") for r in rows)]
    fig.suptitle(f"{rows[0]['dataset']} class {args.cls} ({rows[0]['class_name']}), seed {args.seed}"
                 + (f"; all with {','.join(shared)}" if shared and len(rows) > 1 else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out} ({len(rows)} methods)")


if __name__ == "__main__":
    main()
