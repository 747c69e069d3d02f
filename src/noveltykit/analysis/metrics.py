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


# --- pixel metrics: where the novelty is ----------------------------------------------------------

def _check_pixels(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """(bool masks, float maps), both (N, H, W): ground truth (1 = defect pixel) and anomaly maps."""
    masks, maps = np.asarray(masks), np.asarray(maps)
    if masks.shape != maps.shape or masks.ndim != 3:
        raise ValueError(f"masks {masks.shape} and maps {maps.shape} must have one shape, (N, H, W)")
    if masks.dtype != bool and not np.isin(masks, (0, 1)).all():
        raise ValueError("masks must be 0/1 or bool (1 = defect pixel)")
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or inf")
    masks = masks.astype(bool)
    if not masks.any():
        raise ValueError("masks have no defect pixels: pixel metrics need at least one")
    if masks.all():
        raise ValueError("masks have no normal pixels: pixel metrics need at least one")
    return masks, maps


def pixel_auroc(masks, maps) -> float:
    """AUROC over every pixel of every image, defect pixels (mask 1) against normal ones (mask 0);
    good images, with all-zero masks, add only normal pixels. A large defect weighs as many of
    its pixels, a small one little: `pro_auc` weighs every defect alike."""
    masks, maps = _check_pixels(masks, maps)
    return auroc(masks.ravel(), maps.ravel())


def _region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """(each pixel's 1 / the size of its defect region, 0 off the regions; the number of regions).
    Regions are 8-connected components of each image's mask, as MVTec AD's evaluation labels them
    (scipy.ndimage.label with a 3x3 structure of ones); no region spans two images."""
    from scipy import ndimage  # lazily: only pixel metrics need it

    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = 1  # 8-connected within an image, never across the image axis
    labelled, n_regions = ndimage.label(masks, structure)
    sizes = np.bincount(labelled.ravel())
    inverse = np.r_[0.0, 1.0 / sizes[1:]]
    return inverse[labelled], int(n_regions)


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, per-region overlap) at every distinct threshold, from (0, 0) to (1, 1).

    MVTec AD's PRO: at threshold t the pixels with map >= t are predicted defective; the PRO is the
    mean over every defect region of all images of |predicted ∩ region| / |region|, and the FPR the
    share of predicted pixels among all mask-0 pixels. One sort of all pixels and two cumulative
    sums give every threshold at once (as MVTec's own code does); tied map values are one threshold.
    """
    masks, maps = _check_pixels(masks, maps)
    weights, n_regions = _region_weights(masks)
    order = np.argsort(-maps.ravel(), kind="stable")
    s = maps.ravel()[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    fpr = np.cumsum(~masks.ravel()[order])[last_of_tie] / (~masks).sum()
    pro = np.cumsum(weights.ravel()[order])[last_of_tie] / n_regions
    return np.r_[0.0, np.minimum(fpr, 1.0), 1.0], np.r_[0.0, np.minimum(pro, 1.0), 1.0]


def pro_auc(masks, maps, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve (`pro_curve`) from FPR 0 to `fpr_limit`, divided by `fpr_limit`:
    1.0 for a map that ranks every defect pixel above every normal one, fpr_limit / 2 for a
    constant map. The curve is linear between its points, so the PRO at exactly `fpr_limit` is
    interpolated between the points either side, as MVTec AD's evaluation does; every defect
    region counts alike, however small."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps)
    inside = fpr <= fpr_limit
    x, y = fpr[inside], pro[inside]
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    if x[-1] < fpr_limit:  # the segment that crosses fpr_limit, up to the limit
        after = np.searchsorted(fpr, fpr_limit, side="right")
        at_limit = y[-1] + (pro[after] - y[-1]) * (fpr_limit - x[-1]) / (fpr[after] - x[-1])
        area += (fpr_limit - x[-1]) * (y[-1] + at_limit) / 2
    return area / fpr_limit
