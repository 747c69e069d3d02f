"""The tech report's certainty experiment (§2.3, Fig. 2.1-2.2): a classifier of every MNIST digit
but the fours, asked about a trained digit and about uniform random noise, with one pass and with
the expectation under MC dropout.

    python benchmarks/certainty_noise.py --epochs 10 --mc-samples 30 --out docs/figures

One training (the leave-one-out split's training images and their labels); the same network
scores with dropout off (one pass) and as the mean over `--mc-samples` sampled networks. Writes
`certainty-noise-bars.png` (the predicted class distribution of one test digit and one noise
image, one pass and MC) and `certainty-noise-hist.png` (the certainty of 1,000 noise images and
of the test digits, both ways), and prints the numbers as JSON.
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
from noveltykit.detectors.certainty import certainty  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="small", help="small or allconv (the report's)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--mc-samples", type=int, default=30)
    ap.add_argument("--held-out", type=int, default=4)
    ap.add_argument("--noise", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    ds = load_dataset("mnist", progress=False)
    split = make_split(ds, "leave-one-out", args.held_out, args.seed)
    train_x, val_x, test_x, is_novel = split.arrays(ds)
    det = detectors.make("certainty", arch=args.arch, epochs=args.epochs, dropout=args.dropout,
                         random_state=args.seed).fit(train_x, val_x, y=ds.normal_labels(split.train_idx))
    noise = torch.rand(args.noise, *train_x.shape[1:], generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    digits = to_float(test_x[~is_novel][:2000])
    model = det.scorer().eval()
    mc = detectors.make("certainty", arch=args.arch, dropout=args.dropout, mc_samples=args.mc_samples,
                        random_state=args.seed)
    with torch.no_grad():
        p = {("one pass", "digits"): det.probabilities(model, digits), ("one pass", "noise"): det.probabilities(model, noise),
             ("MC dropout", "digits"): mc.probabilities(model, digits), ("MC dropout", "noise"): mc.probabilities(model, noise)}
    cert = {k: certainty(v).numpy() for k, v in p.items()}
    classes = [int(c) for c in det.classes_]
    summary = {"arch": args.arch, "epochs": args.epochs, "dropout": args.dropout, "mc_samples": args.mc_samples,
               "held_out": args.held_out, "classes": classes,
               "test_accuracy_trained_digits_one_pass": float(
                   (np.asarray(classes)[p[("one pass", "digits")].argmax(1).numpy()]
                    == ds.test_y[split.test_idx][~is_novel][:2000]).mean()),
               "certainty": {f"{a}, {b}": {"mean": float(c.mean()), "median": float(np.median(c)),
                                            "share_above_0.9": float((c > 0.9).mean())}
                             for (a, b), c in cert.items()}}
    print(json.dumps(summary, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fig, axes = plt.subplots(2, 2, figsize=(8, 5), sharey=True)
    for i, way in enumerate(("one pass", "MC dropout")):
        for j, what in enumerate(("digits", "noise")):
            probs = p[(way, what)][0].numpy()
            ax = axes[i, j]
            ax.bar(range(len(classes)), probs, color="C0" if what == "digits" else "C3")
            ax.set_xticks(range(len(classes)), [str(c) for c in classes])
            label = "a test digit" if what == "digits" else "uniform noise"
            ax.set_title(f"{way}: {label}, certainty {cert[(way, what)][0]:.2f}", fontsize=9)
            ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("p(class)")
    axes[1, 0].set_ylabel("p(class)")
    fig.suptitle(f"certainty ({args.arch}), trained on every digit but {args.held_out}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "certainty-noise-bars.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    bins = np.linspace(0, 1, 41)
    for ax, way in zip(axes, ("one pass", "MC dropout")):
        ax.hist(cert[(way, "digits")], bins=bins, alpha=0.6, label="test digits (trained classes)", density=True)
        ax.hist(cert[(way, "noise")], bins=bins, alpha=0.6, label=f"{args.noise} noise images", density=True)
        ax.set(title=way, xlabel="certainty C(p) = 1 - H(p)")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "certainty-noise-hist.png", dpi=90)
    plt.close(fig)
    print(f"wrote {out / 'certainty-noise-bars.png'} and {out / 'certainty-noise-hist.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
