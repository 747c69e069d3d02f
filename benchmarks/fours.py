"""The tech report's "fours" experiment (§2.4, Fig. 2.3-2.4): an autoencoder trained on every
MNIST digit except the fours, then asked to reconstruct test digits, fours included.

    python benchmarks/fours.py --method ae --epochs 10 --out docs/figures

Writes two PNGs: the histogram of per-image reconstruction errors of each test digit (the held-out
fours drawn bold), and a grid of test inputs beside their reconstructions, trained digits beside
the held-out fours. Prints, per digit, the mean error and the share of that digit's test images
whose error is below the median error of the trained digits. The model is trained and thresholded
on training images only (the leave-one-out protocol's split); the test images only make the
figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from noveltykit import detectors  # noqa: E402
from noveltykit.data import load_dataset  # noqa: E402
from noveltykit.data.images import to_float  # noqa: E402
from noveltykit.data.protocols import make_split  # noqa: E402
from noveltykit.analysis.metrics import auroc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="ae", help="a reconstruction detector: ae, conv-ae, dae, ...")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--held-out", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    ds = load_dataset("mnist", progress=False)
    split = make_split(ds, "leave-one-out", args.held_out, args.seed)
    train_x, val_x, test_x, is_novel = split.arrays(ds)
    det = detectors.make(args.method, epochs=args.epochs, random_state=args.seed).fit(train_x, val_x)
    errors = det.decision_function(test_x)
    digits = ds.test_y[split.test_idx]
    trained_median = np.median(errors[~is_novel])
    rows = {int(d): {"mean_error": float(errors[digits == d].mean()),
                     "below_trained_median": float((errors[digits == d] < trained_median).mean())}
            for d in range(10)}
    print(json.dumps({"method": args.method, "epochs": args.epochs, "held_out": args.held_out,
                      "auroc_held_out_vs_rest": auroc(is_novel, errors), "per_digit": rows}, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"fours-{args.method}"

    fig, ax = plt.subplots(figsize=(7, 3.8))
    bins = np.linspace(errors.min(), np.quantile(errors, 0.995), 60)
    for d in range(10):
        held = d == args.held_out
        ax.hist(errors[digits == d], bins=bins, histtype="step", lw=2.5 if held else 1,
                color="black" if held else f"C{d}", label=f"{d}{' (held out)' if held else ''}")
    ax.set(xlabel="mean reconstruction error of an image", ylabel="test images",
           title=f"{args.method} trained on every digit but {args.held_out} ({args.epochs} epochs)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / f"{tag}-histogram.png", dpi=90)
    plt.close(fig)

    rng = np.random.default_rng(args.seed)
    trained = rng.choice(np.flatnonzero(~is_novel), 8, replace=False)
    fours = rng.choice(np.flatnonzero(is_novel), 8, replace=False)
    model = det.scorer().eval()
    with torch.no_grad():
        recon = lambda idx: model(to_float(test_x[idx])).numpy()
        columns = [to_float(test_x[trained]).numpy(), recon(trained), to_float(test_x[fours]).numpy(), recon(fours)]
    fig, axes = plt.subplots(8, 4, figsize=(4, 8))
    titles = ["trained digits", "reconstructions", f"held-out {args.held_out}s", "reconstructions"]
    for j, col in enumerate(columns):
        for i in range(8):
            axes[i, j].imshow(col[i, 0], cmap="gray", vmin=-1, vmax=1)
            axes[i, j].axis("off")
        axes[0, j].set_title(titles[j], fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{tag}-grid.png", dpi=90)
    plt.close(fig)
    print(f"wrote {out / (tag + '-histogram.png')} and {out / (tag + '-grid.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
