"""Executors: the same cells, the same records, serially or as Ray tasks (a local Ray of 2 CPUs)."""
import builtins
import importlib.util
import json

import numpy as np
import pytest

import plugin_detectors  # noqa: F401 (registers logged-knn, raising-knn, dying-knn here)
from busy_helpers import fit_cache_entry_of_class_0, run_while_held
from conftest import make_blobs_dataset
from noveltykit.experiments.bench import BenchConfig, BenchFailed, run_benchmark
from noveltykit.experiments.executors import DEFERRED, ExecutorConfig, import_ray, run_each

# not imported here: noveltykit imports Ray itself, after asking it for a loopback-only node
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")
RAY, SERIAL = ExecutorConfig("ray", retries=1), ExecutorConfig()
PLUGIN = ("plugin_detectors",)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (start-up takes seconds); workers see the tests folder."""
    from noveltykit.experiments.executors import start_ray
    start_ray(num_cpus=2)
    import ray
    assert ray.util.get_node_ip_address() == "127.0.0.1", "a local Ray serves the loopback interface only"
    yield
    ray.shutdown()


def bench(out, methods, executor=SERIAL, **kw):
    cfg = BenchConfig(dataset="blobs", methods=methods, seeds=[0], out=str(out), plots=False,
                      executor=executor, imports=PLUGIN, **kw)
    return run_benchmark(cfg, dataset=make_blobs_dataset(), progress=False)


def by_cell(records):
    return {(r["class"], r["seed"], r["method"]): r for r in records}


def test_ray_gives_the_records_serial_gives(local_ray, tmp_path):
    methods = ["knn", "pca", "ae:epochs=3,batch_size=8"]  # ae: trained, one thread a cell both ways
    serial = by_cell(bench(tmp_path / "serial", methods))
    on_ray = by_cell(bench(tmp_path / "ray", methods, RAY))
    assert serial.keys() == on_ray.keys() and len(serial) == 3 * 3
    for key, r in serial.items():
        assert on_ray[key]["auroc"] == r["auroc"], key
        assert on_ray[key]["threshold"] == r["threshold"], key
        assert (on_ray[key]["executor"], r["executor"]) == ("ray", "serial")
        assert on_ray[key]["threads"] == r["threads"] == 1
    for stem in (tmp_path / "serial" / "scores").rglob("*.npz"):
        twin = tmp_path / "ray" / "scores" / stem.relative_to(tmp_path / "serial" / "scores")
        np.testing.assert_array_equal(np.load(stem)["scores"], np.load(twin)["scores"])


def test_a_cell_that_raises_is_filed_and_the_rest_complete(local_ray, tmp_path):
    with pytest.raises(BenchFailed) as info:
        bench(tmp_path, ["knn", "raising-knn"], RAY)
    assert len(info.value.failures) == 3 and {f["error_type"] for f in info.value.failures} == {"ValueError"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"] for r in results["results"]} == {"knn"} and len(results["results"]) == 3
    assert all("raising-knn always fails" in f["error"] for f in results["failed"])


def test_a_dying_worker_is_retried_then_filed_as_failed(local_ray, tmp_path):
    log = tmp_path / "fits.log"
    with pytest.raises(BenchFailed) as info:
        bench(tmp_path / "out", ["knn", f"dying-knn:log={log}"], RAY, classes=[0])
    failures = info.value.failures
    assert len(failures) == 1 and all(f["retries"] == RAY.retries and f["error_type"] == "WorkerCrashedError"
                                      and f["method"].startswith("dying-knn") for f in failures)
    assert len(log.read_text().split()) == RAY.retries + 1, "1 run + 1 retry"
    done = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(done["results"]) == 1 and len(done["failed"]) == 1  # knn's cell is there


def test_a_killed_serial_sweep_resumes_on_ray_with_only_the_rest(local_ray, tmp_path):
    log = tmp_path / "fits.log"
    spec = f"logged-knn:log={log}"
    bench(tmp_path / "out", [spec], classes=[0])  # "killed" after class 0: its cell is filed
    assert len(log.read_text().split()) == 1
    records = bench(tmp_path / "out", [spec], RAY)
    assert len(records) == 3 and len(log.read_text().split()) == 3, "class 0 was not fitted again"


def deferring(item, *, wait, log):
    """Item 0 needs what another process holds until it is asked to wait for it."""
    with open(log, "a") as f:
        f.write(f"{item}:{wait}\n")
    return DEFERRED if item == 0 and not wait else item * 10


@pytest.mark.parametrize("kind", ["serial", "ray"])
def test_a_deferred_item_runs_again_waiting_once_the_others_are_done(request, tmp_path, kind):
    if kind == "ray":
        request.getfixturevalue("local_ray")
    done, log = [], tmp_path / "calls.log"
    run_each(deferring, range(4), ExecutorConfig(kind), lambda item, result: done.append((item, result)), log=str(log))
    assert done[-1] == (0, 0) and sorted(done) == [(0, 0), (1, 10), (2, 20), (3, 30)]
    assert sorted(log.read_text().split()) == ["0:False", "0:True", "1:False", "2:False", "3:False"]


def test_ray_runs_other_cells_while_a_fit_it_needs_is_busy(local_ray, tmp_path):
    """A Ray worker does not sit on a fit another process is making: the cell is deferred, and
    run once the other cells are done. One cell at a time (2 CPUs a cell), so a worker that sat on
    it would hold up every other cell."""
    from noveltykit.experiments.cellstore import CellStore
    ds = make_blobs_dataset()
    entry = fit_cache_entry_of_class_0(tmp_path, ds)  # the fit class 0's cell needs, in a shared cache
    out = tmp_path / "bench"
    cfg = BenchConfig(dataset="blobs", methods=["knn:k=3"], classes=[0, 1, 2], out=str(out), plots=False,
                      fit_cache=str(tmp_path / "fits"), executor=ExecutorConfig("ray", retries=1, cpus_per_cell=2))
    cell_classes = lambda: sorted(json.loads(p.read_text())["class"] for p in (out / "cells").glob("*.json"))  # noqa: E731
    results = []
    seen = run_while_held(tmp_path / "fits" / f"{entry}.lock",
                           lambda: results.extend(run_benchmark(cfg, dataset=ds, progress=False)), cell_classes)
    assert seen and 0 not in seen, "other cells ran while class 0's fit was busy"
    assert sorted(r["class"] for r in results) == [0, 1, 2]
    assert CellStore(out).failures() == [], "the busy fit was deferred, not filed as a failure"


def test_ray_missing_is_a_clear_message_before_any_work(monkeypatch, tmp_path):
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ray" else real_import(name, *a, **k))
    with pytest.raises(ImportError, match=r"pip install 'noveltykit\[ray\]'"):
        import_ray()
    with pytest.raises(ImportError, match="needs Ray"):
        BenchConfig(dataset="blobs", methods=["knn"], out=str(tmp_path), executor=ExecutorConfig("ray"))
    assert not (tmp_path / "results.json").exists()


def test_executor_settings_are_checked():
    with pytest.raises(ValueError, match="executor must be"):
        ExecutorConfig("dask")
    with pytest.raises(ValueError, match="for --executor ray"):
        ExecutorConfig("serial", gpus_per_cell=1)
    with pytest.raises(ValueError, match="cpus_per_cell"):
        ExecutorConfig("ray", cpus_per_cell=0)
