"""The fit cache (`detectors/fit_cache.py`): a fit is kept by what it was fitted on and loaded,
not redone, by the next caller asking for the same one; anything else is a miss. An ensemble's
members and a sweep's trials go through it."""
from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.detectors import Detector
from noveltykit.detectors.context import RunContext
from noveltykit.detectors.fit_cache import fit_cached, fit_key
from noveltykit.experiments.sweep import SweepConfig, TrainOnly, run_sweep

from busy_helpers import fit_cache_entry_of_class_0, returns_within, run_while_held
from conftest import make_blobs_dataset


@pytest.fixture
def fits(monkeypatch):
    """The detectors whose fit ran (by name)."""
    calls = []
    fit = Detector.fit

    def counting(self, *args, **kwargs):
        calls.append(self.name)
        return fit(self, *args, **kwargs)
    monkeypatch.setattr(Detector, "fit", counting)
    return calls


@pytest.fixture(scope="module")
def data():
    ds = make_blobs_dataset(n_train=60, n_test=30, channels=1, size=16)
    normal = ds.train_x[ds.train_y == 0]
    return normal[:45], normal[45:], ds.test_x


def _knn(cache=None, **params):
    return detectors.make("knn", k=3, **params).configure(RunContext(fit_cache=cache))


def test_without_a_cache_it_is_a_plain_fit(data, fits):
    x, v, _ = data
    det = _knn()
    assert fit_cached(det, x, v) == (det, False) and fits == ["knn"]


def test_the_same_fit_is_loaded_and_scores_alike(tmp_path, data, fits):
    x, v, test = data
    first = _knn(tmp_path)
    assert fit_cached(first, x, v) == (first, False) and fits == ["knn"]
    second, loaded = fit_cached(_knn(tmp_path), x, v)
    assert loaded and second is not first and fits == ["knn"], "the second one was loaded, not fitted"
    assert second.context.fit_cache == tmp_path
    np.testing.assert_array_equal(second.decision_function(test), first.decision_function(test))
    assert second.threshold_ == first.threshold_


@pytest.mark.parametrize("change", ["params", "images", "validation", "off-grid float"])
def test_anything_else_is_a_miss(tmp_path, data, fits, change):
    x, v, _ = data
    fit_cached(_knn(tmp_path), x, v)
    det, x2, v2 = _knn(tmp_path), x, v
    if change == "params":
        det = _knn(tmp_path, random_state=1)
    elif change == "images":
        x2 = x[1:]
    elif change == "validation":
        v2 = v[:-1]
    else:  # one pixel between two uint8 levels: images no uint8 array gives
        x2 = x.astype(np.float32) / 127.5 - 1
        x2[0, 0, 0, 0] += 0.001
    assert fit_key(det, x2, v2) != fit_key(_knn(), x, v)
    assert fit_cached(det, x2, v2) == (det, False) and fits == ["knn", "knn"]


def test_uint8_and_its_exact_float_scaling_are_one_key(tmp_path, data, fits):
    """What a sweep's trial gets (float) and a benchmark's cell (uint8) of the same images."""
    x, v, test = data
    first, _ = fit_cached(_knn(tmp_path), x, v)
    as_float = lambda a: torch.from_numpy(a).float() / 127.5 - 1  # noqa: E731
    assert fit_key(_knn(), as_float(x), as_float(v)) == fit_key(_knn(), x, v)
    second, loaded = fit_cached(_knn(tmp_path), as_float(x), as_float(v))
    assert loaded and second is not first and fits == ["knn"], "loaded, not fitted again"
    np.testing.assert_array_equal(second.decision_function(test), first.decision_function(test))


def test_labels_enter_the_key_only_of_a_detector_that_uses_them(data):
    x, v, _ = data
    y, other = np.zeros(len(x), np.int64), np.ones(len(x), np.int64)
    assert fit_key(_knn(), x, v, y) == fit_key(_knn(), x, v) == fit_key(_knn(), x, v, other)  # knn ignores y
    certainty = detectors.make("certainty")
    assert certainty.uses_labels and fit_key(certainty, x, v, y) != fit_key(certainty, x, v, other)


def test_an_ensemble_loads_a_member_fitted_before(tmp_path, data, fits):
    x, v, test = data
    fit_cached(_knn(tmp_path), x, v)  # e.g. a sweep's trial of knn:k=3
    ens = detectors.make("ensemble", members="knn/k=3+pca").configure(RunContext(fit_cache=tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens.fit(x, v)
    assert fits == ["knn", "ensemble", "pca"], "the knn member came from the cache"
    # so the record says the ensemble's fit time holds a load of it
    assert [m["fit_loaded_from_cache"] for m in ens.fit_report()["member_fits"]] == [True, False]
    ens.save(tmp_path / "ens")
    assert "fit_loaded_from_cache" not in detectors.load(tmp_path / "ens").fit_report()["member_fits"][0], \
        "a loaded ensemble does not know how its members were fitted"
    alone = _knn().fit(x, v)
    np.testing.assert_array_equal(ens.members_[0].decision_function(test), alone.decision_function(test))


def test_an_ensemble_is_resumed_only_by_a_member_it_fitted_itself(tmp_path, data, monkeypatch):
    """A member the cache gave was resumed (or not) in another run: the ensemble's fit did not
    go on from a checkpoint because of it."""
    x, v, _ = data
    monkeypatch.setattr(Detector, "fit_resumed", lambda self: True)  # as if every fit went on from one
    ens = lambda: detectors.make("ensemble", members="knn/k=3+pca").configure(RunContext(fit_cache=tmp_path))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ens().fit(x, v).fit_resumed(), "its members were fitted here"
        assert not ens().fit(x, v).fit_resumed(), "both members came from the cache"


def test_a_sweeps_ensemble_trial_reuses_its_members_trials(tmp_path, fits):
    ds = make_blobs_dataset()
    cfg = SweepConfig(dataset="blobs", method="knn:k=3", grid={}, variants=["ensemble:members=knn/k=3+pca"],
                      classes=[0, 1], out=str(tmp_path / "sweep"), image_size=8, fit_cache=str(tmp_path / "fits"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(cfg, TrainOnly(ds), progress=False)
    # knn:k=3 fitted once per class, by its own trial; the ensembles loaded it
    assert fits.count("knn") == 2 and fits.count("pca") == 2 and fits.count("ensemble") == 2


def test_a_benchmark_cell_loads_the_sweep_trial_of_its_class_and_seed(tmp_path, fits):
    """A sweep trains on the benchmark's very training and validation images (dev_split), so a
    benchmark given the sweep's fit cache loads the trial's fit for that class and seed, and
    scores as a fresh fit does; its record says the fit was loaded."""
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    ds = make_blobs_dataset()
    cache = str(tmp_path / "fits")
    run_sweep(SweepConfig(dataset="blobs", method="knn", grid={"k": ["3"]}, classes=[0], out=str(tmp_path / "sweep"),
                          image_size=8, fit_cache=cache), TrainOnly(ds), progress=False)
    assert fits == ["knn"]
    bench = lambda out, **kw: run_benchmark(BenchConfig(dataset="blobs", methods=["knn:k=3"], classes=[0, 1],  # noqa: E731
                                                         out=str(tmp_path / out), plots=False, **kw),
                                             dataset=ds, progress=False)
    cached = {r["class"]: r for r in bench("cached", fit_cache=cache)}
    assert fits == ["knn", "knn"], "class 0 was loaded; class 1 (no trial) was fitted and kept"
    assert cached[0]["fit_loaded_from_cache"] and not cached[1]["fit_loaded_from_cache"]
    fresh = {r["class"]: r for r in bench("fresh")}
    assert "fit_loaded_from_cache" not in fresh[0]
    assert [cached[c]["auroc"] for c in (0, 1)] == [fresh[c]["auroc"] for c in (0, 1)]


def test_images_are_hashed_chunk_by_chunk_as_the_whole_array(data, monkeypatch):
    from noveltykit.detectors import fit_cache
    from noveltykit.detectors.base import fingerprint
    x = data[0]
    as_float = torch.from_numpy(x).float() / 127.5 - 1
    off_grid = as_float.clone()
    off_grid[-1, 0, 0, 0] += 0.001  # in the last chunk: the uint8 reading is dropped only there
    monkeypatch.setattr(fit_cache, "CHUNK_IMAGES", 7)  # several chunks, the last one short
    assert fit_cache.images_digest(as_float) == fingerprint(torch.from_numpy(x)) == fit_cache.images_digest(x)
    assert fit_cache.images_digest(off_grid) == fingerprint(off_grid)


# --- a fit another process is making: a runner with other work defers it -----------------------

def test_a_busy_fit_raises_inside_defer_busy_fits_and_is_fitted_once_free(tmp_path, data, fits):
    from noveltykit.detectors.fit_cache import FitBusy, defer_busy_fits
    from noveltykit.fileio import file_lock
    x, v, _ = data
    det = _knn(tmp_path)
    lock = tmp_path / f"knn-{fit_key(det, x, v)}.lock"
    def deferring_fit():
        with defer_busy_fits():
            return fit_cached(det, x, v)
    with file_lock(lock), pytest.raises(FitBusy):
        returns_within(deferring_fit)
    assert fits == []
    assert fit_cached(det, x, v) == (det, False) and fits == ["knn"]
    with file_lock(lock):  # e.g. another process loading it: a saved fit is read all the same, no wait
        loaded_det, loaded = returns_within(lambda: fit_cached(_knn(tmp_path), x, v))
        assert loaded and loaded_det is not det and fits == ["knn"]


@pytest.mark.parametrize("executor", ["serial", pytest.param("ray", marks=pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the ray extra is not installed"))])
def test_a_sweep_trains_other_trials_while_a_fit_it_needs_is_busy(tmp_path, fits, executor):
    ds = make_blobs_dataset()
    entry = fit_cache_entry_of_class_0(tmp_path, ds)
    cache, trials = tmp_path / "fits", tmp_path / "sweep" / "trials"
    cfg = SweepConfig(dataset="blobs", method="knn", grid={"k": ["3"]}, classes=[0, 1], out=str(tmp_path / "sweep"),
                      image_size=8, fit_cache=str(cache), executor=executor)
    trial_classes = lambda: sorted(json.loads(p.read_text())["class"] for p in trials.glob("*.json"))  # noqa: E731
    seen = run_while_held(cache / f"{entry}.lock", lambda: run_sweep(cfg, TrainOnly(ds), progress=False),
                           trial_classes)
    assert seen == [1], "class 1's trial ran while class 0's fit was busy"
    assert trial_classes() == [0, 1] and len([d for d in cache.iterdir() if d.is_dir()]) == 2
    if executor == "serial":  # fitted here (Ray's fits are its workers'): the learning run's, then one per class
        assert fits.count("knn") == 3


def test_a_benchmark_runs_other_cells_while_a_fit_it_needs_is_busy(tmp_path, fits):
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    from noveltykit.experiments.cellstore import CellStore
    ds = make_blobs_dataset()
    entry = fit_cache_entry_of_class_0(tmp_path, ds)
    cache, out = tmp_path / "fits", tmp_path / "bench"
    cfg = BenchConfig(dataset="blobs", methods=["knn:k=3"], classes=[0, 1], out=str(out), plots=False,
                      fit_cache=str(cache))
    results = []
    cell_classes = lambda: sorted(json.loads(p.read_text())["class"] for p in (out / "cells").glob("*.json"))  # noqa: E731
    seen = run_while_held(cache / f"{entry}.lock",
                           lambda: results.extend(run_benchmark(cfg, dataset=ds, progress=False)), cell_classes)
    assert seen == [1], "class 1's cell ran while class 0's fit was busy"
    assert sorted(r["class"] for r in results) == [0, 1]
    assert CellStore(out).failures() == [], "the busy fit was deferred, not filed as a failure"
