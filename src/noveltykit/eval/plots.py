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
    return _save(fig, path, title)


def plot_training_curves(path: str | Path, history: list[dict], title: str, selected_epoch: int | None = None
                         ) -> Path:
    """Losses and validation loss per epoch; the test AUROC, when recorded, is a diagnostic only."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, label in (("loss_g", "generator"), ("loss_d", "discriminator"), ("k", "distillation K_l"),
                       ("loss", "training loss"), ("val_loss", "validation (normal)")):
        if key in history[0]:  # a loss that is 0 (not trained) or inf (not defined yet) is left out
            ax_loss.plot(epochs, [h[key] if 0 < h[key] < float("inf") else float("nan") for h in history],
                         marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="training")
    ax_loss.legend(fontsize=8)
    if "diagnostic_test_auroc" in history[0]:
        ax_auc.plot(epochs, [h["diagnostic_test_auroc"] for h in history], marker=".", c="C3")
        ax_auc.set(title="test AUROC (diagnostic: never used to choose)")
    else:
        ax_auc.set(title="no per-epoch AUROC recorded (bench --curves)")
    ax_auc.set(xlabel="epoch", ylabel="AUROC")
    if selected_epoch is not None:
        for ax in (ax_loss, ax_auc):
            ax.axvline(selected_epoch + 1, c="grey", ls=":", lw=1)
    return _save(fig, path, title)


def _save(fig, path: str | Path, title: str) -> Path:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
