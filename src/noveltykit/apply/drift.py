"""Are more images flagged than the threshold promises? The drift alarm of `serve` and `score`.

A threshold set as the q quantile of the normal validation scores flags about 1 - q of normal
images like them (`detectors/thresholds.py`). When clearly more than that are flagged, the images
coming in are no longer like the training data (or the threshold was set too low): a drift.

The check: `flagged` of `n` images above the threshold, against the expected rate p, by the
one-sided binomial test: the p-value is P(X >= flagged) for X ~ Binomial(n, p), summed exactly
(`binomial_tail`; the same as `scipy.stats.binomtest(..., alternative="greater")`, without
importing scipy into `score`);
an alarm when that p-value is below `alpha` (default 0.001: one false alarm in a thousand checks
of normal traffic), and only once there are at least `min_images` images (default 50, or the
window when it is smaller). Fewer flagged than expected is no alarm: it is not drift towards
novelty.

`DriftMonitor` keeps the last `window` images' verdicts (a sliding window, thread-safe) for
`serve`; `flag_check` checks a whole folder for `score`. The expected rate comes from the model:
`expected_rate(detector, threshold)`. This module imports no web framework, no torch and no scipy.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import asdict, dataclass

DEFAULT_WINDOW = 500  # images in serve's sliding window
DEFAULT_ALPHA = 0.001
MIN_IMAGES = 50  # no verdict on fewer images (or on a smaller whole window)


@dataclass(frozen=True)
class FlagCheck:
    """`flagged` of `images` above the threshold against `expected_rate` (None: nothing to compare
    with, `expected_from` says why); `p_value` is None below `min_images`."""
    images: int
    flagged: int
    expected_rate: float | None
    expected_from: str
    alpha: float
    min_images: int
    p_value: float | None
    alarm: bool

    @property
    def flagged_rate(self) -> float | None:
        return self.flagged / self.images if self.images else None

    def as_dict(self) -> dict:
        return {**asdict(self), "flagged_rate": self.flagged_rate}

    def line(self) -> str:
        """One line: "N of M images flagged (x%), expected about y% from ...: consistent / DRIFT: ..."."""
        head = f"{self.flagged} of {self.images} images flagged ({_pct(self.flagged_rate or 0.0)})"
        if self.expected_rate is None:
            return f"{head}; no drift check: {self.expected_from}"
        head += f", expected about {_pct(self.expected_rate)} from {self.expected_from}"
        if self.p_value is None:
            return f"{head}: too few images to check (fewer than {self.min_images})"
        test = f"one-sided binomial p = {self.p_value:.2g}"
        if self.alarm:
            return (f"{head}: DRIFT: more flagged than the threshold explains ({test} < alpha {self.alpha:g}); "
                    "the images differ from the training data, or the threshold is too low")
        return f"{head}: consistent ({test}, alpha {self.alpha:g})"


def _pct(rate: float) -> str:
    return f"{100 * rate:.2g}%" if rate < 0.01 else f"{100 * rate:.1f}%"


def flag_check(flagged: int, images: int, expected_rate: float | None, expected_from: str = "", *,
               alpha: float = DEFAULT_ALPHA, min_images: int = MIN_IMAGES) -> FlagCheck:
    """The one-sided binomial check of `flagged` of `images` against `expected_rate` (module docstring)."""
    if not 0 <= flagged <= images:
        raise ValueError(f"flagged must be in [0, images], got {flagged} of {images}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p_value = None
    if expected_rate is not None and images >= min_images and images > 0:
        if not 0.0 <= expected_rate <= 1.0:
            raise ValueError(f"expected_rate must be in [0, 1], got {expected_rate}")
        p_value = binomial_tail(int(flagged), int(images), float(expected_rate))
    return FlagCheck(int(images), int(flagged), expected_rate, expected_from, float(alpha), int(min_images),
                     p_value, p_value is not None and p_value < alpha)


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact up to float rounding: the smaller tail is summed in
    log space from its end nearest the mode, outwards, until the terms no longer count."""
    if k <= 0 or p >= 1.0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)

    def log_pmf(i: int) -> float:
        return log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q

    def tail(indices) -> float:  # terms falling away from the mode: stop once they are negligible
        first, total = None, 0.0
        for i in indices:
            term = log_pmf(i)
            first = term if first is None else first
            total += math.exp(term - first)
            if term - first < -40:  # e^-40: below float precision of the sum
                break
        return 0.0 if first is None else math.exp(first + math.log(total))

    mode = math.floor((n + 1) * p)
    if k > mode:  # the upper tail is the smaller one: k, k+1, ..., n
        return min(1.0, tail(range(k, n + 1)))
    return max(0.0, 1.0 - tail(range(k - 1, -1, -1)))  # 1 - P(X <= k-1): k-1, k-2, ..., 0


def expected_rate(detector, threshold: float | str | None = None) -> tuple[float | None, str]:
    """The share of normal images the threshold flags, and where that comes from: (1 - q, "the
    threshold's quantile q") for a quantile threshold (the model's own, as `threshold_from_`
    records it, or `threshold` given as "q0.99"); for a threshold given as a score, the share of
    the model's normal validation scores above it; (None, why) when the model keeps none."""
    if threshold is None:
        source = getattr(detector, "threshold_from_", None) or {}
        if "quantile" in source:
            q = float(source["quantile"])
            return 1.0 - q, f"the threshold's quantile {q:g}"
        value = float(detector.threshold_)
    else:
        from ..detectors.thresholds import parse_threshold
        kind, value = parse_threshold(threshold)
        if kind == "quantile":
            return 1.0 - value, f"the threshold's quantile {value:g}"
    scores = getattr(detector, "validation_scores_", None)
    if scores is None or len(scores) == 0:
        return None, "the threshold is a score and the model keeps no normal validation scores to compare with"
    above = sum(1 for s in scores if s > value)
    return above / len(scores), f"the {above} of {len(scores)} normal validation scores above the threshold"


class DriftMonitor:
    """The last `window` images' verdicts (flagged or not, by the model's threshold) and their
    check against `expected_rate`; safe to update from several threads."""

    def __init__(self, expected_rate: float | None, expected_from: str = "", *, window: int = DEFAULT_WINDOW,
                 alpha: float = DEFAULT_ALPHA, min_images: int = MIN_IMAGES):
        if int(window) < 1:
            raise ValueError(f"the drift window must be at least 1 image, got {window}")
        if expected_rate is not None and not (0.0 <= expected_rate <= 1.0 and math.isfinite(expected_rate)):
            raise ValueError(f"expected_rate must be in [0, 1], got {expected_rate}")
        flag_check(0, 0, None, alpha=alpha)  # alpha's check, once, here
        self.expected_rate, self.expected_from = expected_rate, expected_from
        self.window, self.alpha = int(window), float(alpha)
        self.min_images = min(int(min_images), self.window)
        self._verdicts: deque[bool] = deque(maxlen=self.window)
        self._flagged = 0
        self._lock = threading.Lock()

    def add(self, flags) -> None:
        """Append verdicts (True = flagged), oldest first; the oldest beyond the window fall out."""
        with self._lock:
            for flag in flags:
                flag = bool(flag)
                if len(self._verdicts) == self.window:
                    self._flagged -= self._verdicts[0]
                self._verdicts.append(flag)
                self._flagged += flag

    def check(self) -> FlagCheck:
        with self._lock:
            flagged, images = self._flagged, len(self._verdicts)
        return flag_check(flagged, images, self.expected_rate, self.expected_from, alpha=self.alpha,
                          min_images=self.min_images)

    def state(self) -> dict:
        """What /v1/model shows: the check, with the window's size."""
        return {"window": self.window, **self.check().as_dict()}
