"""Fitted models kept by what they were fitted on, so that one fit serves every caller that asks
for the same one: a sweep's `feat-msc` trial is the very member an ensemble of the next step
would fit again (minutes of fine-tuning). A RunContext's `fit_cache` folder turns it on.

The key is the detector's name and parameters, the noveltykit version, and a hash of the
training images, the validation images and the labels: a fit on other images is a miss, never a
wrong hit. Images are hashed as uint8 where they are exactly uint8 images' [-1, 1] scaling (the
contract: a detector fits uint8 images as that scaling), so a benchmark's uint8 cell and a sweep's
float trial of the same class and seed share one entry. Labels enter the key only for a detector
with `uses_labels` (the others ignore them). Processes sharing the folder fit each key once
(`fileio.run_once`); a saved model is a model folder like any other. A runner with other work to
do asks, inside `defer_busy_fits()`, not to wait for a fit another process is making (an entry
here, or a `kdgan` student's teacher: `fit_once`): FitBusy tells it to come back later (a sweep
beside a benchmark then trains its other trials meanwhile). `claim` is such a runner's side.
"""
from __future__ import annotations

import contextvars
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from .. import __version__
from ..features.store import exact_uint8
from ..fileio import BUSY, DONE, run_once
from .base import Detector, as_image_tensor, fingerprint
from .registry import ModelFileError, load


T = TypeVar("T")
CHUNK_IMAGES = 256  # float images are checked for uint8 levels this many at a time


class FitBusy(Exception):
    """Another process is making this very fit now, and the caller asked not to wait for it."""


_DEFER = contextvars.ContextVar("defer_busy_fits", default=False)


@contextmanager
def defer_busy_fits(defer: bool = True):
    """Inside, `fit_once` (`fit_cached`, a student's teacher) raises FitBusy at once for a fit
    another process is making, instead of waiting for it (an ensemble's members too: members
    fitted before it stay in the cache);
    `defer=False` waits again, whatever an outer block said."""
    token = _DEFER.set(defer)
    try:
        yield
    finally:
        _DEFER.reset(token)


def images_digest(a) -> str:
    """`fingerprint` of the images as uint8 where every one is exactly a uint8 image's [-1, 1]
    scaling, else of the float32 images: the same digests as hashing the whole array at once."""
    x = as_image_tensor(a, keep_uint8=True)
    if x.dtype == torch.uint8:
        return fingerprint(x)
    as_uint8 = hashlib.sha256()
    for start in range(0, len(x), CHUNK_IMAGES):
        quantised, exact = exact_uint8(x[start:start + CHUNK_IMAGES].contiguous())
        if not exact.all():
            return fingerprint(x)  # images no uint8 array gives: their float32 bytes
        as_uint8.update(np.ascontiguousarray(quantised).tobytes())
    return as_uint8.hexdigest()[:16]


def fit_key(detector: Detector, x, x_val=None, y=None) -> str:
    """What a fit depends on, as a short hash (the cache folder's name)."""
    def images(a):
        return "none" if a is None else images_digest(a)
    ignored = y is None or not detector.uses_labels
    labels = "none" if ignored else hashlib.sha256(np.asarray(y, np.int64).tobytes()).hexdigest()[:16]
    what = {"detector": detector.name, "params": detector.get_params(), "noveltykit": __version__,
            "x": images(x), "x_val": images(x_val), "y": labels}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def fit_cached(detector: Detector, x, x_val=None, y=None) -> tuple[Detector, bool]:
    """`detector.fit(x, x_val, y=y)`, or the same fit loaded from the context's `fit_cache` (then
    configured with the detector's context). Returns the fitted detector, which callers use from
    then on (a loaded one is another object), and whether it was loaded (then the time spent was a
    load, and the fit's resuming was another run's)."""
    cache = detector.context.fit_cache
    if cache is None:
        return detector.fit(x, x_val, y=y), False
    folder = Path(cache) / f"{detector.name}-{fit_key(detector, x, x_val, y)}"

    def saved():
        if not folder.is_dir():
            return None
        try:
            return load(folder).configure(detector.context)
        except ModelFileError:  # a damaged entry is fitted again and replaced
            return None

    def fit_and_keep():
        detector.fit(x, x_val, y=y)
        detector.save(folder)
        return detector

    if (ready := saved()) is not None:  # a saved model appears whole (`save`): no lock to read it
        return ready, True
    folder.parent.mkdir(parents=True, exist_ok=True)
    state, fitted = fit_once(folder.with_suffix(".lock"), saved, fit_and_keep, folder.name)
    return fitted, state == DONE


def fit_once(lock: Path, saved: Callable[[], T | None], fit: Callable[[], T], what: str) -> tuple[str, T]:
    """`run_once` for a fit that processes share (a fit cache's entry, a student's teacher): the
    saved one (DONE) or one fitted here (RAN). Another process's fit in progress is waited for,
    or, inside `defer_busy_fits()`, raises FitBusy at once."""
    state, result = run_once(lock, saved, fit, wait=not _DEFER.get())
    if state == BUSY:
        raise FitBusy(f"{what} is being fitted by another process")
    return state, result


def claim(lock: Path, finished: Callable[[], T | None], work: Callable[[], T], wait: bool) -> tuple[str, T | None]:
    """`run_once` for a runner's unit of work (a benchmark cell, a sweep trial) whose fit may need
    fits that other processes make. With wait=False, (BUSY, None) when another process holds the
    unit or a fit it needs (not a failure: the runner comes back to it); wait=True waits for both."""
    try:
        with defer_busy_fits(not wait):
            return run_once(lock, finished, work, wait=wait)
    except FitBusy:
        return BUSY, None

