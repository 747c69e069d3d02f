"""Per-cell figures: ROC curve beside the normal-vs-novel score histogram."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import roc_curve


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on servers and in CI), imported on first
    use: it costs about a second, and most commands that import this module draw nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_cell(path: str | Path, labels: np.ndarray, scores: np.ndarray, title: str,
              auroc: float, threshold: float | None = None) -> Path:
    labels = np.asarray(labels).astype(bool)
    plt = pyplot()
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
    plt = pyplot()
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


def plot_step_trace(path: str | Path, trace: dict[str, list[float]], title: str, events: list[dict] = (),
                    history: list[dict] = ()) -> Path:
    """A fit's per-step trace, as the GAN lab records it (tech report Fig. 3.2, 3.3, A.2-A.4): both
    losses; D's accuracy on its training batches, on normal validation images after each epoch and, where recorded, on
    held-out novel images (`diagnostic_novel_d_acc`: a diagnostic, never used to choose); the
    generated batch's variance and both learning rates. Pathology events are vertical lines."""
    steps = np.asarray(trace["step"])
    plt = pyplot()
    fig, (ax_loss, ax_acc, ax_var) = plt.subplots(1, 3, figsize=(13, 3.6))
    ax_loss.plot(steps, trace["loss_g"], lw=0.6, label="generator (Forger)")
    ax_loss.plot(steps, trace["loss_d"], lw=0.6, label="discriminator (Curator)")
    ax_loss.set(xlabel="step", ylabel="loss", yscale="symlog", title="losses")
    ax_acc.plot(steps, trace["d_acc"], lw=0.5, alpha=0.6, label="D on its batch (real + fake)")
    gan_epochs = [h for h in history if h.get("phase", "gan") == "gan"]
    if gan_epochs:
        per_epoch = len(steps) / len(gan_epochs)
        ends = [(i + 1) * per_epoch for i in range(len(gan_epochs))]
        if "d_acc_val" in gan_epochs[0]:
            ax_acc.plot(ends, [h["d_acc_val"] for h in gan_epochs], marker="o", label="D on normal validation")
        if "diagnostic_novel_d_acc" in gan_epochs[0]:
            ax_acc.plot(ends, [h["diagnostic_novel_d_acc"] for h in gan_epochs], marker="s", c="C3",
                        label="D on held-out novel (diagnostic)")
    ax_acc.axhline(0.5, c="grey", lw=0.8, ls="--")
    ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title="discriminator accuracy")
    ax_var.plot(steps, np.maximum(trace["fake_var"], 1e-12), lw=0.6, c="C2", label="generated batch variance")
    ax_var.set(xlabel="step", ylabel="variance", yscale="log", title="collapse / explosion")
    ax_lr = ax_var.twinx()
    ax_lr.plot(steps, trace["lr_g"], lw=0.6, c="C4", ls=":", label="lr G")
    ax_lr.plot(steps, trace["lr_d"], lw=0.6, c="C5", ls=":", label="lr D")
    ax_lr.set(ylabel="learning rate", yscale="log")
    for e in events:
        for ax in (ax_loss, ax_acc, ax_var):
            ax.axvline(e["step"], c="red", lw=0.8, alpha=0.7)
        ax_loss.annotate(e["monitor"], (e["step"], 1), xycoords=("data", "axes fraction"), fontsize=7,
                         rotation=90, va="top", color="red")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=7)
    ax_var.legend(fontsize=7, loc="upper left")
    ax_lr.legend(fontsize=7, loc="upper right")
    return _save(fig, path, title)


def plot_linear_gan(path: str | Path, history: dict[str, list[float]], title: str) -> Path:
    """The linear GAN's run (tech report A.5): D on data and on generated points, against the fixed
    point D(theta_g) = 1/2, and the two fixed-point residuals."""
    steps = np.arange(1, len(history["D_g"]) + 1)
    plt = pyplot()
    fig, (ax_d, ax_r) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax_d.plot(steps, history["D_x"], lw=0.8, label="D(theta x), data")
    ax_d.plot(steps, history["D_g"], lw=0.8, label="D(theta g), generated")
    ax_d.axhline(0.5, c="grey", ls="--", lw=0.8)
    ax_d.set(xlabel="generator step", ylabel="mean D", title="discriminator")
    ax_r.plot(steps, history["residual_x"], lw=0.8, label="|mean (D(theta x) - 1) x|")
    ax_r.plot(steps, history["residual_g"], lw=0.8, label="|mean (1 - 2 D(theta g)) g|")
    ax_r.set(xlabel="generator step", yscale="log", title="fixed-point residuals")
    for ax in (ax_d, ax_r):
        ax.legend(fontsize=8)
    return _save(fig, path, title)


def _save(fig, path: str | Path, title: str) -> Path:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
    return path
