"""Thresholds a user can set and trust.

A threshold is given as a score (`15`, `0.31`) or as a quantile of the model's normal validation
scores (`q0.99`: the score 99% of them stay at or below, so about 1% of normal images like them
are flagged). What a threshold promises is the share of normal images above it: measured on the
validation images, it is known only as well as their number allows, so it is reported with a
95% Clopper-Pearson interval (exact for a fixed score; conservative for a quantile of the same
scores, whose exceedance follows the narrower order-statistic law).
"""
from __future__ import annotations

import math

import numpy as np

# Fewer validation images than this above a quantile threshold: the false-alarm rate is known
# only roughly (e.g. 60 images and q0.99: the threshold rests on the single largest score).
MIN_ABOVE = 5
CONFIDENCE = 0.95


def parse_threshold(text: str | float) -> tuple[str, float]:
    """("score", value) or ("quantile", q) from `15`, `-0.2`, `q0.99`; a ValueError says the forms."""
    if isinstance(text, (int, float)):
        return "score", float(text)
    raw = str(text).strip()
    try:
        if raw[:1].lower() == "q":
            q = float(raw[1:])
            if not 0.0 < q <= 1.0:
                raise ValueError
            return "quantile", q
        value = float(raw)
        if math.isfinite(value):
            return "score", value
    except ValueError:
        pass
    raise ValueError(f"threshold {text!r}: give a score (e.g. 15) or a quantile of the normal validation "
                     "scores (e.g. q0.99, in (0, 1])")


def quantile_threshold(validation_scores: np.ndarray, q: float) -> float:
    """The `q` quantile of the validation scores (numpy's linear rule, as `fit` sets it)."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    return float(np.quantile(np.asarray(validation_scores, np.float64), q))


def false_alarm_rate(validation_scores: np.ndarray, threshold: float, confidence: float = CONFIDENCE) -> dict:
    """The share of validation scores above `threshold` and its Clopper-Pearson interval:
    {"rate", "low", "high", "above", "n", "confidence"}."""
    from scipy.special import betaincinv  # the beta law's quantiles; imported on use (0.15 s)

    scores = np.asarray(validation_scores, np.float64)
    n, k = len(scores), int((scores > threshold).sum())
    if n == 0:
        raise ValueError("no validation scores")
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, tail))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - tail))
    return {"rate": k / n, "low": low, "high": high, "above": k, "n": n, "confidence": confidence}


def too_few_above(validation_scores: np.ndarray, threshold: float) -> str | None:
    """A warning when fewer than MIN_ABOVE validation images lie above the threshold, else None."""
    fa = false_alarm_rate(validation_scores, threshold)
    if fa["above"] >= MIN_ABOVE:
        return None
    return (f"only {fa['above']} of {fa['n']} normal validation images score above the threshold: the "
            f"false-alarm rate is between {100 * fa['low']:.1f}% and {100 * fa['high']:.1f}% "
            f"({100 * fa['confidence']:.0f}% interval). Give more validation images (--val, or a larger "
            "validation_fraction) or a lower quantile")
