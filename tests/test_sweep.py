"""noveltykit.experiments.sweep: a hyper-parameter search judged on a training-only development split."""
import importlib.util
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from noveltykit.data import to_float
from noveltykit.data.protocols import dev_split, make_split
from noveltykit.detectors import Detector
from noveltykit.experiments import sweep
from noveltykit.experiments.sweep import SweepConfig, TrainOnly, choose_by_rule, run_sweep

from conftest import make_blobs_dataset

AE_TINY = "ae:epochs=2,batch_size=8"  # a trained detector: one dev AUROC per epoch


def _old_dev_split(ds, cls, seed, n_novel=2000):
    """benchmarks/gan_ablation.py's dev_split before it moved into the package: the reference."""
    split = make_split(ds, "one-vs-rest", cls, seed)
    others = np.flatnonzero(ds.train_y != cls)
    pick = np.random.default_rng([seed, cls, 7]).choice(others, size=min(n_novel, len(others)), replace=False)
    x_dev = np.concatenate([ds.train_x[split.val_idx], ds.train_x[pick]])
    y_dev = np.r_[np.zeros(len(split.val_idx)), np.ones(len(pick))]
    return to_float(ds.train_x[split.train_idx]), to_float(ds.train_x[split.val_idx]), to_float(x_dev), y_dev


class NoTest:
    """A dataset whose test images cannot be read: any look at them fails the test."""

    def __init__(self, ds):
        self._ds = ds
        self.name, self.train_x, self.train_y, self.class_names = ds.name, ds.train_x, ds.train_y, ds.class_names

    @property
    def test_x(self):
        raise AssertionError("the sweep read test_x")

    @property
    def test_y(self):
        raise AssertionError("the sweep read test_y")


@pytest.fixture(scope="module")
def noisy():
    """Blobs under heavy noise: k=1 and k=5 get different dev AUROCs, so a rule has work to do."""
    ds = make_blobs_dataset()
    rng = np.random.default_rng(1)
    ds.train_x = np.clip(ds.train_x + rng.normal(0, 90, ds.train_x.shape), 0, 255).astype(np.uint8)
    return ds


def _cfg(out, **kw):
    return SweepConfig(**{"dataset": "blobs", "method": "knn", "grid": {"k": ["1", "5"]}, "classes": [0, 1],
                          "out": str(out), "image_size": 8, **kw})


def _figures(result):
    return [(p["label"], p["aurocs"], p["mean"], p["min"]) for p in result["points"]], result["chosen"]


@pytest.fixture
def fits(monkeypatch):
    """Counts detector fits: which trials ran and which were read back."""
    calls = []
    fit = Detector.fit

    def counting(self, *args, **kwargs):
        calls.append(self)
        return fit(self, *args, **kwargs)
    monkeypatch.setattr(Detector, "fit", counting)
    return calls


# --- (a) the split ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, seed, n_novel", [(0, 0, 2000), (2, 3, 2000), (1, 5, 17)])
def test_dev_split_is_the_benchmarks_bit_for_bit(cls, seed, n_novel):
    ds = make_blobs_dataset(n_train=50)
    new, old = dev_split(ds, cls, seed, n_novel), _old_dev_split(ds, cls, seed, n_novel)
    for a, b in zip(new[:3], old[:3]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    np.testing.assert_array_equal(new[3], old[3])
    assert new[3].dtype == old[3].dtype


# --- (b) no test image is read -------------------------------------------------------------------------

def test_the_sweep_never_reads_a_test_image(tmp_path, blobs):
    view = TrainOnly(blobs)
    with pytest.raises(RuntimeError, match="training images only"):
        _ = view.test_x
    with pytest.raises(RuntimeError, match="test_y"):
        _ = view.test_y
    for read in (lambda: view.test_masks, lambda: view.test_kinds, view.pixel_masks):
        with pytest.raises(RuntimeError, match="training images only"):
            read()
    cfg = SweepConfig(dataset="blobs", method=AE_TINY, grid={"lr": ["0.001", "0.01"]}, classes=[1],
                      out=str(tmp_path), image_size=8)
    result = run_sweep(cfg, NoTest(blobs), progress=False)
    assert result["chosen"]["label"] in ("ae:epochs=2,batch_size=8,lr=0.001", "ae:epochs=2,batch_size=8,lr=0.01")
    trial = json.loads(next((tmp_path / "trials").glob("*.json")).read_text())
    assert trial["dev_auroc_curve"] == [], "no per-epoch curve unless asked for"
    assert trial["n_train"] == 54 and trial["n_dev"] == 6 + 120 and trial["n_dev_novel"] == 120
    assert "no test image read" in trial["split"] and trial["params"]["lr"] in (0.001, 0.01)
    assert 0.05 < trial["process_peak_rss_gib"] < 64  # the fit's process high-water mark, GiB


# --- (c) rules ---------------------------------------------------------------------------------------

def _s(*aurocs):
    return {"aurocs": list(aurocs)}


def test_rules_and_their_ties():
    assert choose_by_rule([_s(0.9, 0.7), _s(0.8, 0.85)], "mean-dev-auroc") == 1
    assert choose_by_rule([_s(0.9, 0.8), _s(0.8, 0.9)], "mean-dev-auroc") == 0, "a tie goes to the first"
    assert choose_by_rule([_s(0.8, 0.9), _s(0.9, 0.8), _s(0.7, 0.7)], "mean-dev-auroc") == 0
    assert choose_by_rule([_s(0.3), _s(0.1 + 0.2)], "mean-dev-auroc") == 0, "float noise is no win"
    # the worst class: 0.8 beats 0.7 where the means tie
    assert choose_by_rule([_s(0.9, 0.7), _s(0.8, 0.8)], "worst-class-dev-auroc") == 1
    assert choose_by_rule([_s(0.8, 0.99), _s(0.95, 0.8)], "worst-class-dev-auroc") == 0
    for fn in sweep.RULES.values():
        assert "first" in fn.__doc__, "the tie rule is in the docstring"
    with pytest.raises(ValueError, match="unknown rule"):
        choose_by_rule([_s(0.5)], "best-test-auroc")
    with pytest.raises(ValueError, match="no finite"):
        choose_by_rule([_s(0.5), _s(float("nan"))], "mean-dev-auroc")


def test_dev_choice_variants_choose_as_before():
    """benchmarks/dev_choice.py --by variant now calls choose_by_rule: the same picks as its own max."""
    path = Path(__file__).parents[1] / "benchmarks" / "dev_choice.py"
    spec = importlib.util.spec_from_file_location("dev_choice", path)
    choice = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(choice)
    rng = random.Random(0)
    for _ in range(200):
        rows = [{"variant": rng.choice("abc"), "dev_auroc_last": rng.choice([0.7, 0.8, 0.9])} for _ in range(6)]
        if len({r["variant"] for r in rows}) < 2:
            continue
        best, means = choice.choose(rows, "variant")
        first = rows[0]["variant"]
        assert best == max(means, key=lambda k: (round(means[k], 6), k == first))


# --- the grid -----------------------------------------------------------------------------------------

def test_grid_points_in_order_with_the_methods_params_updated(tmp_path):
    cfg = _cfg(tmp_path, method="knn:k=3,aggregate=max", grid={"k": ["1", 5], "aggregate": ["mean", "max"]})
    assert [p.label for p in cfg.points] == ["knn:k=1,aggregate=mean", "knn:k=1,aggregate=max",
                                             "knn:k=5,aggregate=mean", "knn:k=5,aggregate=max"]
    assert cfg.grid == {"k": [1, 5], "aggregate": ["mean", "max"]}, "values parsed as in a method spec"
    assert _cfg(tmp_path, method="pca", grid={"n_components": ["0.5", "3"]}).points[0].params == {"n_components": 0.5}


# --- (f) mistakes fail before any work ------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"grid": {"kk": ["1"]}}, "unknown parameter"),
    ({"grid": {"k": ["0"]}}, "k must be"),
    ({"grid": {}}, "empty"),
    ({"grid": {"k": ["1", 1]}}, "duplicate"),
    ({"grid": {"k": "1,5"}}, "list of values"),
    ({"rule": "best-test-auroc"}, "unknown rule"),
    ({"executor": "dask"}, "unknown executor"),
    ({"classes": [0, 0]}, "repeats"),
    ({"method": "nosuch"}, "unknown detector"),
])
def test_bad_configs_fail_before_any_work(tmp_path, fits, kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(tmp_path / "out", **kw)
    assert not fits and not (tmp_path / "out").exists()


def test_a_class_out_of_range_fails_before_any_fit(tmp_path, fits, blobs):
    with pytest.raises(ValueError, match="out of range"):
        run_sweep(_cfg(tmp_path, classes=[0, 7]), blobs, progress=False)
    assert not fits


# --- (d) resumable, (e) one sweep per OUT, the reports ----------------------------------------------------

def test_a_rerun_redoes_only_missing_trials_and_gives_the_same_figures(tmp_path, noisy, fits):
    first = run_sweep(_cfg(tmp_path), noisy, progress=False)
    assert len(fits) == 4 and first["chosen"]["label"] == "knn:k=5"
    trials = sorted((tmp_path / "trials").glob("*.json"))
    assert len(trials) == 4
    trials[2].unlink()
    fits.clear()
    again = run_sweep(_cfg(tmp_path), noisy, progress=False)
    assert len(fits) == 1, "only the deleted trial reran"
    assert _figures(again) == _figures(first)
    assert _figures(json.loads((tmp_path / "sweep.json").read_text())) == _figures(first)
    fits.clear()
    run_sweep(_cfg(tmp_path), noisy, progress=False)
    assert not fits

    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["rule"]["name"] == "mean-dev-auroc" and "first grid point" in saved["rule"]["doc"]
    assert saved["points"][0]["dev_auroc"].keys() == {"0", "1"} and saved["provenance"]["git_commit"]
    md = (tmp_path / "sweep.md").read_text()
    assert "| **`knn:k=5`** |" in md and "| `knn:k=1` |" in md and "mean-dev-auroc" in md
    assert "no test image read" in md
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reuse_adopts_another_sweeps_matching_trials_and_fits_only_the_rest(tmp_path, noisy, fits, capsys):
    first = run_sweep(_cfg(tmp_path / "one", grid={"k": ["1", "5"]}), noisy, progress=False)
    fits.clear()
    cfg = _cfg(tmp_path / "two", grid={}, method="knn:k=5", variants=["knn:k=3"], reuse=[str(tmp_path / "one")])
    second = run_sweep(cfg, noisy, progress=False)
    assert len(fits) == 2, "only knn:k=3's two classes were fitted; knn:k=5's trials were adopted"
    assert second["points"][0]["aurocs"] == first["points"][1]["aurocs"]
    records = [json.loads(p.read_text()) for p in (tmp_path / "two" / "trials").glob("*.json")]
    assert sorted(r.get("reused_from", "") for r in records) == ["", "", str(tmp_path / "one"), str(tmp_path / "one")]
    capsys.readouterr()
    run_sweep(_cfg(tmp_path / "five", grid={}, method="knn:k=5", variants=["knn:k=3"], reuse=[str(tmp_path / "one")]), noisy, progress=True)
    assert f"adopted 2 finished trial(s) from {tmp_path / 'one'}" in capsys.readouterr().err
    fits.clear()  # a trial of another seed is not the same trial: it is fitted, not adopted
    run_sweep(_cfg(tmp_path / "three", grid={"k": ["5"]}, seed=1, reuse=[str(tmp_path / "one")]), noisy, progress=False)
    assert len(fits) == 2
    with pytest.raises(ValueError, match="no trials/ folder"):
        _cfg(tmp_path / "four", reuse=[str(tmp_path / "nowhere")])


@pytest.mark.parametrize("kw", [{"grid": {"k": ["1", "3"]}}, {"seed": 1}, {"classes": [0]},
                                {"rule": "worst-class-dev-auroc"}, {"grid": {"k": ["5", "1"]}}])
def test_another_config_into_the_same_out_is_refused(tmp_path, blobs, fits, kw):
    run_sweep(_cfg(tmp_path), blobs, progress=False)
    fits.clear()
    with pytest.raises(ValueError, match="pick another --out"):
        run_sweep(_cfg(tmp_path, **kw), blobs, progress=False)
    assert not fits


def test_classes_all_is_every_class_recorded_as_that_list(tmp_path, blobs, fits):
    """`all` is resolved once the data is read and recorded as the list it stands for: a rerun
    with that list is the same sweep (nothing refitted), another list is refused."""
    cfg = _cfg(tmp_path, classes="all")
    assert cfg.classes == "all" and _cfg(tmp_path / "b", classes=["all"]).classes == "all"
    result = run_sweep(cfg, blobs, progress=False)
    assert cfg.classes == "all", "the caller's config is left as it was"
    assert result["config"]["classes"] == [0, 1, 2] and list(result["data"]["classes"]) == ["0", "1", "2"]
    assert json.loads((tmp_path / "config.json").read_text())["config"]["classes"] == [0, 1, 2]
    assert len(fits) == 2 * 3
    fits.clear()
    assert _figures(run_sweep(_cfg(tmp_path, classes=[0, 1, 2]), blobs, progress=False)) == _figures(result)
    assert _figures(run_sweep(_cfg(tmp_path, classes="all"), blobs, progress=False)) == _figures(result)
    assert not fits
    with pytest.raises(ValueError, match="differs in classes"):
        run_sweep(_cfg(tmp_path, classes=[0, 1]), blobs, progress=False)
    with pytest.raises(ValueError, match="'all' or a list of class indices"):
        _cfg(tmp_path / "c", classes="some")


def test_a_killed_sweep_still_holds_its_out(tmp_path, blobs, monkeypatch):
    """config.json is written before the first trial, so a sweep killed before sweep.json still
    refuses another config."""
    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(Detector, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_cfg(tmp_path), blobs, progress=False)
    with pytest.raises(ValueError, match="differs in seed"):
        run_sweep(_cfg(tmp_path, seed=2), blobs, progress=False)


# --- (g) Ray: the same records and choice as the serial loop -------------------------------------------------

def test_ray_executor_chooses_as_the_serial_one(tmp_path, noisy, monkeypatch):
    if importlib.util.find_spec("ray") is None:  # not imported here: noveltykit asks it for a loopback node first
        pytest.skip("the ray extra is not installed")
    serial = run_sweep(_cfg(tmp_path / "serial", classes=[0]), noisy, progress=False)
    with_ray = run_sweep(_cfg(tmp_path / "ray", classes=[0], executor="ray"), noisy, progress=False)
    assert _figures(with_ray) == _figures(serial)
    assert (tmp_path / "ray" / "tune" / "sweep").is_dir()
    monkeypatch.setattr(sweep, "_run_ray", lambda *a: pytest.fail("every trial is done: no Ray start-up"))
    assert _figures(run_sweep(_cfg(tmp_path / "ray", classes=[0], executor="ray"), noisy, progress=False)) \
        == _figures(serial)


# --- whole specs as points, and the ablation script that uses them ------------------------------------

def _load_benchmark(name):
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_points_after_the_incumbent_and_exclude_a_grid(tmp_path):
    cfg = _cfg(tmp_path, method="knn", grid={}, variants=["knn:k=1", "pca:n_components=3"])
    assert [p.label for p in cfg.points] == ["knn", "knn:k=1", "pca:n_components=3"]
    with pytest.raises(ValueError, match="not both"):
        _cfg(tmp_path, variants=["knn:k=1"])  # _cfg's grid too
    with pytest.raises(ValueError, match="same label"):
        _cfg(tmp_path, method="knn", grid={}, variants=["knn"])


def test_distill_ablation_runs_sweep_trials_and_appends_only_new_rows(tmp_path, noisy, monkeypatch):
    ablation = _load_benchmark("distill_ablation")
    monkeypatch.setattr(ablation, "load_dataset", lambda name, progress=False: noisy)
    out = tmp_path / "dev.jsonl"
    argv = ["distill_ablation.py", "--dataset", "blobs", "--classes", "0,1", "--variant", "knn",
            "--variant", AE_TINY, "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    ablation.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["class"], r["variant"]) for r in rows] == [(0, "knn"), (0, AE_TINY), (1, "knn"), (1, AE_TINY)]
    ae = rows[1]
    assert ae["lr"] == 1e-3 and len(ae["dev_auroc_curve"]) == len(ae["val_loss"]) == 2
    assert ae["dev_auroc_last"] == ae["dev_auroc_curve"][-1], "select=last: the last epoch is the fitted model"
    ablation.main()  # a rerun: every trial is filed beside OUT, nothing runs or is appended again
    assert len(out.read_text().splitlines()) == 4


def test_a_dataset_without_other_classes_has_no_dev_split():
    with pytest.raises(ValueError, match="needs training images of other classes"):
        dev_split(make_blobs_dataset(n_classes=1), 0, seed=0)


def test_a_sweep_with_progress_shows_each_trials_epochs(tmp_path, blobs, capsys):
    """A trial can take many minutes: with progress on, its fit reports every epoch."""
    cfg = SweepConfig(dataset="blobs", method=AE_TINY, grid={"lr": ["0.001"]}, classes=[1], out=str(tmp_path),
                      image_size=8)
    run_sweep(cfg, blobs, progress=True)
    shown = capsys.readouterr()
    assert "ae 1/2: loss" in shown.out and "ae 2/2: loss" in shown.out
    run_sweep(_cfg(tmp_path / "quiet", method=AE_TINY, grid={"lr": ["0.001"]}, classes=[1]), blobs, progress=False)
    assert "1/2: loss" not in capsys.readouterr().out


def test_curves_record_every_epoch_and_change_no_result(tmp_path, noisy):
    """--curves adds the dev AUROC after each epoch, a diagnostic: the trained weights, and so the
    final dev AUROC the rule reads, are the same with it and without it."""
    on = run_sweep(_cfg(tmp_path / "on", method=AE_TINY, grid={"lr": ["0.001"]}, curves=True), noisy, progress=False)
    off = run_sweep(_cfg(tmp_path / "off", method=AE_TINY, grid={"lr": ["0.001"]}), noisy, progress=False)
    assert on["points"][0]["aurocs"] == off["points"][0]["aurocs"]
    for trial in (tmp_path / "on" / "trials").glob("*.json"):
        record = json.loads(trial.read_text())
        assert len(record["dev_auroc_curve"]) == 2 and record["dev_auroc_curve"][-1] == record["dev_auroc_last"]


def _trial_path(tmp_path, blobs, cfg, point_index, cls):
    view = TrainOnly(blobs)
    return sweep._trial_file(view, cfg, cfg.points[point_index], cls, tmp_path / "trials")[0]


@pytest.mark.parametrize("other_finishes", [True, False])
def test_a_trial_another_process_holds_is_left_for_last_then_read_or_run(tmp_path, blobs, fits, other_finishes):
    """Two sweeps on one OUT: a trial claimed elsewhere is skipped, the rest run, then it is waited
    for. If the holder files it, it is read back (not fitted again); if the holder dies without
    filing it (its lock released, no record), it runs here."""
    import threading

    from noveltykit.fileio import atomic_write_json, file_lock

    cfg = _cfg(tmp_path)  # knn, k = 1 and 5, classes 0 and 1: four trials
    held = _trial_path(tmp_path, blobs, cfg, 0, 0)  # the first trial in the serial order
    others = [_trial_path(tmp_path, blobs, cfg, p, c) for c in (0, 1) for p in (0, 1) if (p, c) != (0, 0)]
    done = {}
    with file_lock(held.with_suffix(".lock")) as got:
        assert got
        worker = threading.Thread(target=lambda: done.update(result=run_sweep(cfg, blobs, progress=False)))
        worker.start()
        for _ in range(600):  # the other three trials finish while this one is held
            if all(p.exists() for p in others):
                break
            worker.join(0.05)
        assert all(p.exists() for p in others) and not held.exists()
        worker.join(0.3)
        assert worker.is_alive(), "the sweep waits for the held trial"
        if other_finishes:
            record = dict(json.loads(others[0].read_text()), **sweep._trial_file(
                TrainOnly(blobs), cfg, cfg.points[0], 0, tmp_path / "trials")[1], dev_auroc_last=0.625)
            atomic_write_json(held, record)
    worker.join(60)
    assert not worker.is_alive() and held.exists()
    assert len(fits) == (3 if other_finishes else 4), "the held trial is fitted here only if nobody filed it"
    first = done["result"]["points"][0]["dev_auroc"]["0"]
    assert (first == 0.625) == other_finishes


@pytest.fixture
def killed_in_second_epoch(monkeypatch):
    """Training raises KeyboardInterrupt at the end of the second epoch it runs; `ends` counts the
    epochs ended, `revive()` lets training run on."""
    from noveltykit.train.model_unit import ModelUnit
    real_end, ends, alive = ModelUnit.end_epoch, [], []

    def end_epoch(self, x_val):
        ends.append(1)
        if len(ends) == 2 and not alive:
            raise KeyboardInterrupt
        return real_end(self, x_val)

    monkeypatch.setattr(ModelUnit, "end_epoch", end_epoch)
    return ends, lambda: alive.append(1)


@pytest.mark.parametrize("curves", [False, True])
def test_a_killed_trained_trial_resumes_from_its_last_epoch(tmp_path, blobs, killed_in_second_epoch, curves):
    """A trial's epochs are checkpointed under trials/checkpoints/: a rerun after a kill trains only
    the epochs left, gives the uninterrupted sweep's figures, and removes the checkpoints. With
    --curves, the epoch the killed process trained has no dev AUROC (None), not a shifted one."""
    ends, _ = killed_in_second_epoch
    cfg = _cfg(tmp_path / "killed", method=AE_TINY, grid={"lr": ["0.001"]}, classes=[1], curves=curves)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, blobs, progress=False)
    [ckpt] = (tmp_path / "killed" / "trials" / "checkpoints").iterdir()
    assert json.loads((ckpt / "latest.json").read_text())["epoch"] == 0
    resumed = run_sweep(cfg, blobs, progress=False)
    assert len(ends) == 3, "the rerun trained the second epoch only"
    assert not ckpt.exists(), "a finished trial's checkpoints are removed"
    record = json.loads(_trial_path(tmp_path / "killed", blobs, cfg, 0, 1).read_text())
    assert record["resumed"] and len(record["val_loss"]) == 2
    assert record["dev_auroc_curve"] == ([None, record["dev_auroc_last"]] if curves else [])
    fresh = run_sweep(_cfg(tmp_path / "fresh", method=AE_TINY, grid={"lr": ["0.001"]}, classes=[1], curves=curves),
                      blobs, progress=False)
    assert resumed["points"][0]["aurocs"] == fresh["points"][0]["aurocs"]
    assert not json.loads(_trial_path(tmp_path / "fresh", blobs, cfg, 0, 1).read_text())["resumed"]


def test_a_killed_trial_is_not_resumed_on_other_images(tmp_path, blobs, killed_in_second_epoch):
    """The same trial (dataset name, class, seed, spec) rerun on other images starts afresh: its
    checkpoints are named by the fit's key, which hashes the images."""
    ends, revive = killed_in_second_epoch
    cfg = _cfg(tmp_path, method=AE_TINY, grid={"lr": ["0.001"]}, classes=[1])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, blobs, progress=False)
    revive()
    other = make_blobs_dataset()
    other.train_x = 255 - other.train_x
    result = run_sweep(cfg, other, progress=False)
    assert len(ends) == 4, "both epochs trained again"
    assert not json.loads(_trial_path(tmp_path, blobs, cfg, 0, 1).read_text())["resumed"]
    assert not (tmp_path / "trials" / "checkpoints").exists() or not any((tmp_path / "trials" / "checkpoints").iterdir())
    fresh = run_sweep(_cfg(tmp_path / "fresh", method=AE_TINY, grid={"lr": ["0.001"]}, classes=[1]), other,
                      progress=False)
    assert result["points"][0]["aurocs"] == fresh["points"][0]["aurocs"]


def test_a_killed_ensemble_trial_resumes_its_trained_member(tmp_path, blobs, killed_in_second_epoch):
    """An ensemble's trained member checkpoints below the trial's folder too; the record says the
    trial was resumed (from the member's history, an ensemble having none of its own)."""
    ends, _ = killed_in_second_epoch
    cfg = _cfg(tmp_path, method="knn", grid={}, variants=["ensemble:members=ae/epochs=2/batch_size=8+pca"],
               classes=[1])
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(cfg, blobs, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(cfg, blobs, progress=False)
    assert len(ends) == 3, "the member trained its second epoch only"
    record = json.loads(_trial_path(tmp_path, blobs, cfg, 1, 1).read_text())
    assert record["spec"].startswith("ensemble") and record["resumed"]
    assert not json.loads(_trial_path(tmp_path, blobs, cfg, 0, 1).read_text())["resumed"]  # knn: nothing to resume
