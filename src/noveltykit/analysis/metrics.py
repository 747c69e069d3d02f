"""Detection metrics. Convention everywhere: higher score = more novel; label 1 = novel."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.size}) and scores ({scores.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    if labels.all() or not labels.any():
        raise ValueError("need both normal (0) and novel (1) labels")
    return labels, scores


def auroc(labels, scores) -> float:
    """Area under the ROC curve by the rank formula (P-KDGAN Eq. 1, Mann-Whitney U).

    AUC = (sum of the novel samples' ranks - N(N+1)/2) / (M N), with N novel and M normal samples
    and ranks over all scores ascending. Tied scores share their mean rank, which counts each
    normal/novel tie as one half. (The paper's Eq. 1 sums over the normal class; with higher =
    more novel the class whose ranks are summed must be the novel one.)
    """
    labels, scores = _check(labels, scores)
    ranks = rankdata(scores)  # average ranks for ties
    n_novel = int(labels.sum())
    n_normal = labels.size - n_novel
    return float((ranks[labels].sum() - n_novel * (n_novel + 1) / 2) / (n_novel * n_normal))


def _sorted_counts(labels: np.ndarray, scores: np.ndarray):
    """Cumulative TP/FP counts at each distinct threshold, from the highest score down."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    return tp, fp, s[last_of_tie]


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), starting at (0, 0)."""
    labels, scores = _check(labels, scores)
    tp, fp, thr = _sorted_counts(labels, scores)
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    return fpr, tpr, np.r_[np.inf, thr]


def aupr(labels, scores) -> float:
    """Area under the precision-recall curve with novel as positive (average precision)."""
    labels, scores = _check(labels, scores)
    tp, fp, _ = _sorted_counts(labels, scores)
    precision = tp / (tp + fp)
    recall = tp / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(labels, scores, tpr_level: float = 0.95) -> float:
    """False positive rate at the first threshold whose true positive rate reaches `tpr_level`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(fpr[np.searchsorted(tpr, tpr_level - 1e-12)])


def precision_at_n(labels, scores, n: int | None = None) -> float:
    """Fraction of novel images among the n highest scores (n defaults to the number of novel)."""
    labels, scores = _check(labels, scores)
    n = int(labels.sum()) if n is None else int(n)
    if not 1 <= n <= labels.size:
        raise ValueError(f"n must be in [1, {labels.size}], got {n}")
    top = np.argsort(-scores, kind="mergesort")[:n]
    return float(labels[top].mean())


def all_metrics(labels, scores) -> dict[str, float]:
    return {"auroc": auroc(labels, scores), "aupr": aupr(labels, scores),
            "fpr95": fpr_at_tpr(labels, scores, 0.95), "prec_at_n": precision_at_n(labels, scores)}
