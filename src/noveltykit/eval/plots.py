"""Per-cell figures: ROC curve beside the normal-vs-novel score histogram."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import roc_curve  # noqa: E402


def plot_cell(path: str | Path, labels: np.ndarray, scores: np.ndarray, title: str,
              auroc: float, threshold: float | None = None) -> Path:
    labels = np.asarray(labels).astype(bool)
    fig, (ax_roc, ax_hist) = plt.subplots(1, 2, figsize=(9, 3.6))
    fpr, tpr, _ = roc_curve(labels, scores)
    ax_roc.plot(fpr, tpr, lw=1.5, label=f"AUROC {auroc:.4f}")
    ax_roc.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
               title="ROC (novel = positive)")
    ax_roc.legend(loc="lower right")
    bins = np.histogram_bin_edges(scores, bins=60)
    ax_hist.hist(scores[~labels], bins=bins, alpha=0.6, density=True, label=f"normal ({(~labels).sum()})")
    ax_hist.hist(scores[labels], bins=bins, alpha=0.6, density=True, label=f"novel ({labels.sum()})")
    if threshold is not None:
        ax_hist.axvline(threshold, c="k", ls="--", lw=1, label="threshold (validation)")
    ax_hist.set(xlabel="novelty score (higher = more novel)", ylabel="density", title="test scores")
    ax_hist.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
