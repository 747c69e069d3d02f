"""Helpers of the tests of busy fits: a lock held as another process making that fit would."""
from __future__ import annotations

import threading
import time

import pytest

from noveltykit.experiments.sweep import SweepConfig, TrainOnly, run_sweep
from noveltykit.fileio import file_lock


def fit_cache_entry_of_class_0(tmp_path, ds) -> str:
    """The fit-cache entry of knn:k=3's class-0 trial (a benchmark's class-0 cell shares it)."""
    cache = tmp_path / "learn"
    run_sweep(SweepConfig(dataset="blobs", method="knn", grid={"k": ["3"]}, classes=[0], out=str(tmp_path / "s0"),
                          image_size=8, fit_cache=str(cache)), TrainOnly(ds), progress=False)
    (entry,) = [p.name for p in cache.iterdir() if p.is_dir()]
    return entry


def returns_within(fn, seconds: float = 120):
    """fn()'s result (or its exception), failing the test if it has not returned in `seconds`: a
    call that waits on a lock where it should not fails instead of hanging the suite."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as exc:  # raised here, in the test's thread
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds} s")
    if "error" in out:
        raise out["error"]
    return out["result"]


def run_while_held(lock, run, first_done, seconds: float = 300):
    """Run `run()` in a thread while this test holds `lock` (as another process making that fit
    would); returns what `first_done()` saw once the runner had finished its other work (or
    after `seconds`: generous, as it includes a Ray start-up on a busy machine)."""
    errors = []

    def guarded():
        try:
            run()
        except BaseException as exc:  # shown by the test, not lost in the thread
            errors.append(exc)
    with file_lock(lock):
        runner = threading.Thread(target=guarded, daemon=True)
        runner.start()
        deadline = time.monotonic() + seconds
        while not (seen := first_done()) and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    runner.join(timeout=seconds)
    assert not runner.is_alive(), "the run did not finish once the lock was free"
    if errors:
        raise errors[0]
    return seen
