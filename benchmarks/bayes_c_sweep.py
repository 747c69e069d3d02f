"""The Bayes factor's prior odds c swept over decades on one class (tech report §2.2): where the
odds threshold (novel where log P(x|background) - log P(x|normal) > log c) falls, as the
false-alarm rate on normal validation images and the detection rate on the test's novel images.

    python benchmarks/bayes_c_sweep.py --dataset mnist --cls 0 --background gaussian --out docs/figures

c moves every score by the same log c: the ranking (AUROC) never changes, only the operating
point. One fit (c = 1); the rates for any c follow from its scores exactly. Writes
`bayes-c-sweep-<dataset>-class<cls>-<background>.png` and prints the rates per decade as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from noveltykit import detectors  # noqa: E402
from noveltykit.data import load_dataset  # noqa: E402
from noveltykit.data.protocols import make_split  # noqa: E402
from noveltykit.analysis.metrics import auroc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--cls", type=int, default=0)
    ap.add_argument("--background", default="gaussian")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    ds = load_dataset(args.dataset, progress=False)
    split = make_split(ds, "one-vs-rest", args.cls, args.seed)
    train_x, val_x, test_x, is_novel = split.arrays(ds)
    det = detectors.make("bayes-factor", background=args.background, c=1.0, threshold="odds",
                         random_state=args.seed).fit(train_x, val_x)
    val, test = det.decision_function(val_x), det.decision_function(test_x)  # -log BF at c = 1
    # decades that take the operating point from nearly everything novel to nearly nothing
    both = np.concatenate([val, test])
    lo = math.floor(np.quantile(both, 0.001) / math.log(10))
    hi = math.ceil(np.quantile(both, 0.999) / math.log(10))
    step = max(1, math.ceil((hi - lo) / 60))
    decades = sorted(set(range(lo, hi + 1, step)) | {0})  # c = 1 exactly, whatever the step
    rows = [{"log10_c": k, "false_alarm_val": float((val > k * math.log(10)).mean()),
             "detection_test": float((test[is_novel] > k * math.log(10)).mean()),
             "false_alarm_test": float((test[~is_novel] > k * math.log(10)).mean())} for k in decades]
    print(json.dumps({"dataset": ds.name, "class": args.cls, "background": args.background,
                      "auroc": auroc(is_novel, test), "mixture_components": det.fit_report()["mixture_components"],
                      "at_c_1": next(r for r in rows if r["log10_c"] == 0), "rows": rows}, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = [r["log10_c"] for r in rows]
    ax.plot(xs, [r["false_alarm_val"] for r in rows], "o-", ms=3, label="false alarms, normal validation images")
    ax.plot(xs, [r["detection_test"] for r in rows], "s-", ms=3, label="detections, novel test images")
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="log10 c (prior odds normal : novel)", ylabel="share flagged novel",
           title=f"Bayes factor ({args.background} background), {ds.name} class {args.cls}: "
                 f"AUROC {auroc(is_novel, test):.3f} at every c")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"bayes-c-sweep-{ds.name}-class{args.cls}-{args.background}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
