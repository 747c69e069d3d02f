import json

import numpy as np
import pytest
import torch

from noveltykit.experiments import bench
from noveltykit.experiments.bench import BenchConfig, run_benchmark
from noveltykit.detectors.specs import MethodSpec
from noveltykit.detectors.ede_gan import EDEGANDetector

from conftest import make_blobs_dataset

METHODS = ["knn:k=3", "pca:n_components=4"]


def _cfg(out, **kw):
    return BenchConfig(**{"dataset": "blobs", "methods": METHODS, "classes": "all", "seeds": [0, 1],
                          "out": str(out), **kw})


def test_bench_writes_results_table_and_plots(tmp_path):
    ds = make_blobs_dataset()
    results = run_benchmark(_cfg(tmp_path), dataset=ds, progress=False)
    assert len(results) == 3 * 2 * 2
    saved = json.loads((tmp_path / "results.json").read_text())["results"]
    assert saved == json.loads(json.dumps(results))
    r = saved[0]
    for key in ("dataset", "protocol", "class", "seed", "method", "params", "auroc", "aupr", "fpr95",
                "fit_seconds", "score_seconds", "versions", "git_commit"):
        assert key in r
    assert r["params"]["k"] == 3 and r["versions"]["torch"]
    # the process's memory high-water mark: a test process holds torch, so well above 50 MiB
    assert 0.05 < r["process_peak_rss_gib"] < 64
    assert all(x["auroc"] > 0.9 for x in saved)
    table = (tmp_path / "table.md").read_text()
    assert "**MEAN**" in table and "knn:k=3" in table and "±" in table  # two seeds: mean ± std
    assert (tmp_path / "report.md").exists()
    for x in saved:
        assert (tmp_path / x["plot"]).stat().st_size > 1000
    stem = bench.cell_stem(MethodSpec.parse("knn:k=3"), 0, 0)
    scores = np.load(tmp_path / "scores" / f"{stem}.npz", allow_pickle=False)
    assert scores["scores"].shape == (90,)


def test_killed_benchmark_resumes_without_redoing_cells(tmp_path, monkeypatch):
    ds = make_blobs_dataset()
    real_run_cell, calls = bench.run_cell, []

    def dying_run_cell(*args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt  # the user's Ctrl-C, or a kill, in the middle of cell 6
        calls.append(args[2:5])
        return real_run_cell(*args, **kwargs)

    monkeypatch.setattr(bench, "run_cell", dying_run_cell)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_cfg(tmp_path, plots=False), dataset=ds, progress=False)
    assert len(json.loads((tmp_path / "results.json").read_text())["results"]) == 5

    calls.clear()
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: (calls.append(a[2:5]), real_run_cell(*a, **k))[1])
    results = run_benchmark(_cfg(tmp_path, plots=False), dataset=ds, progress=False)
    assert len(calls) == 12 - 5 and len(results) == 12
    assert len({bench.cell_key(r) for r in results}) == 12

    fresh = run_benchmark(_cfg(tmp_path / "fresh", plots=False), dataset=ds, progress=False)
    by_key = {bench.cell_key(r): r["auroc"] for r in fresh}
    assert {bench.cell_key(r): r["auroc"] for r in results} == by_key


def test_other_experiment_in_same_out_is_refused(tmp_path):
    ds = make_blobs_dataset()
    run_benchmark(_cfg(tmp_path, classes=[0], seeds=[0], plots=False), dataset=ds, progress=False)
    with pytest.raises(ValueError, match="another experiment"):
        run_benchmark(_cfg(tmp_path, classes=[0], seeds=[0], protocol="leave-one-out", plots=False),
                      dataset=ds, progress=False)


def test_bad_method_spec_fails_before_work(tmp_path):
    with pytest.raises(ValueError, match="key=value"):
        _cfg(tmp_path, methods=["knn:k"])


def test_trained_detector_records_history_and_diagnostic_curves(tmp_path):
    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    method = "ede-gan:width=4,epochs=2,batch_size=16,preset=paper"
    results = run_benchmark(_cfg(tmp_path, methods=[method], classes=[0], seeds=[0], curves=True),
                            dataset=ds, progress=False)
    r = results[0]
    assert [h["epoch"] for h in r["history"]] == [0, 1] and r["selected_epoch"] == 1
    assert all(0 <= h["diagnostic_test_auroc"] <= 1 for h in r["history"])
    assert (tmp_path / r["curves_plot"]).stat().st_size > 1000
    assert r["params"]["preset"] == "paper" and r["params"]["epochs"] == 2


def test_killed_training_resumes_mid_cell_from_its_last_epoch(tmp_path, monkeypatch):
    from noveltykit import detectors
    from noveltykit.train import gan

    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    method = "ede-gan:width=4,epochs=3,batch_size=16,preset=paper"
    cfg = lambda out, **kw: _cfg(out, methods=[method], classes=[0], seeds=[0], plots=False, **kw)
    real_val_loss, calls = gan.validation_loss, []

    def dies_in_third_epoch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_val_loss(*args)

    monkeypatch.setattr(gan, "validation_loss", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg(tmp_path / "a"), dataset=ds, progress=False)
    ckpt = tmp_path / "a" / "checkpoints" / bench.cell_stem(MethodSpec.parse(method), 0, 0)
    assert json.loads((ckpt / "latest.json").read_text())["epoch"] == 1
    monkeypatch.setattr(gan, "validation_loss", real_val_loss)
    resumed = run_benchmark(cfg(tmp_path / "a", save_models=True), dataset=ds, progress=False)[0]
    assert not ckpt.exists(), "a finished cell's checkpoints are removed"
    fresh = run_benchmark(cfg(tmp_path / "b"), dataset=ds, progress=False)[0]
    assert resumed["auroc"] == fresh["auroc"] and resumed["history"][2]["loss_g"] == fresh["history"][2]["loss_g"]
    assert resumed["resumed"] and not fresh["resumed"]

    model = detectors.load(tmp_path / "a" / resumed["model"])
    saved = np.load(tmp_path / "a" / "scores" / (resumed["model"].removeprefix("models/") + ".npz"))
    np.testing.assert_allclose(model.decision_function(ds.test_x), saved["scores"], rtol=1e-5)


def test_students_share_the_teacher_of_the_ede_gan_column(tmp_path, monkeypatch):
    from noveltykit import detectors

    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    teacher = "ede-gan:width=4,budget=quick"  # plain: what a kdgan student trains as its teacher
    students = ["kdgan:structure=1,width=1,epochs=1,teacher_width=4,teacher_budget=quick",
                "kdgan:structure=2,width=1,epochs=1,teacher_width=4,teacher_budget=quick"]
    fits = []
    real_fit = EDEGANDetector.fit
    monkeypatch.setattr(EDEGANDetector, "fit",
                        lambda self, *a, **kw: fits.append(1) or real_fit(self, *a, **kw))
    results = run_benchmark(_cfg(tmp_path, methods=[teacher, *students], classes=[0], seeds=[0], plots=False),
                            dataset=ds, progress=False)
    assert len(fits) == 1, "one teacher trained for the ede-gan column and both students"
    by_method = {r["method"]: r for r in results}
    assert by_method[students[0]]["teacher_auroc"] == by_method[teacher]["auroc"]
    assert by_method[students[1]]["teacher_auroc"] == by_method[teacher]["auroc"]
    assert len([p for p in (tmp_path / "teachers").iterdir() if not p.name.startswith(".")]) == 1  # one teacher


def _gan_methods():
    return ["knn:k=3", "ede-gan:width=4,budget=quick",
            "kdgan:structure=1,width=1,epochs=1,teacher_width=4,teacher_budget=quick"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_device_reaches_trained_detectors_and_leaves_labels_alone(tmp_path, device):
    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    results = run_benchmark(_cfg(tmp_path, methods=_gan_methods(), classes=[0], seeds=[0], plots=False,
                                 device=device), dataset=ds, progress=False)
    by_method = {r["method"]: r for r in results}
    assert set(by_method) == set(_gan_methods())  # the device is not in the column names
    for r in results:  # a run setting: recorded beside the params, never among them
        assert r["device"] == device and "device" not in r["params"]
        assert not {"checkpoint_dir", "resume", "progress", "teacher_cache"} & set(r["params"])


def test_run_settings_are_not_method_parameters(tmp_path):
    for spec in ("ede-gan:width=4,device=cpu", "ede-gan:checkpoint_dir=/tmp/x", "kdgan:teacher_cache=/tmp"):
        with pytest.raises(ValueError, match="unknown parameter"):
            _cfg(tmp_path, methods=[spec])


def test_unusable_device_fails_before_work(tmp_path):
    with pytest.raises(ValueError, match="cpu' or 'cuda"):
        _cfg(tmp_path, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            _cfg(tmp_path, device="cuda")


def test_commit_named_in_the_environment_wins_over_git(monkeypatch):
    import subprocess

    from noveltykit.experiments import provenance

    def no_git(*a, **kw):
        raise subprocess.CalledProcessError(128, "git")

    monkeypatch.setenv(provenance.ENV_COMMIT, "abc123")
    assert provenance.git_commit() == "abc123"  # a shipped copy's .git may be stale
    monkeypatch.delenv(provenance.ENV_COMMIT)
    assert provenance.git_commit() != "abc123"
    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.git_commit() == "unknown"


def test_curves_change_no_weight_and_no_score(tmp_path):
    """--curves (a test-AUROC diagnostic after each epoch) is recorded, and nothing else changes."""
    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    method = "ede-gan:width=4,epochs=2,batch_size=16"
    records = {c: run_benchmark(_cfg(tmp_path / str(c), methods=[method], classes=[0], seeds=[0], plots=False,
                                     curves=c, save_models=True), dataset=ds, progress=False)[0]
               for c in (False, True)}
    assert "diagnostic_test_auroc" in records[True]["history"][0]
    assert "diagnostic_test_auroc" not in records[False]["history"][0]
    stem = bench.cell_stem(MethodSpec.parse(method), 0, 0)
    weights = [(tmp_path / str(c) / "models" / stem / "weights.safetensors").read_bytes() for c in (False, True)]
    assert weights[0] == weights[1]
    scores = [np.load(tmp_path / str(c) / "scores" / f"{stem}.npz")["scores"] for c in (False, True)]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert records[False]["threshold"] == records[True]["threshold"]


def test_image_size_reaches_the_data_and_defines_the_experiment(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("test/normal", 4), ("test/novel", 4)):
        folder = tmp_path / "data" / part
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = lambda size: BenchConfig(dataset=f"folder:{tmp_path / 'data'}", methods=["knn:k=1"], image_size=size,  # noqa: E731
                                   out=str(tmp_path / "out"), plots=False)
    r = run_benchmark(cfg(64), progress=False)[0]
    assert json.loads((tmp_path / "out" / "experiment.json").read_text())["image_size"] == 64
    assert r["n_train"] + r["n_val"] == 12
    with pytest.raises(ValueError, match="another experiment.*image_size"):
        run_benchmark(cfg(32), progress=False)
