"""Nothing lost under faults: concurrent writers, kills, failed cells, hostile labels, killed saves,
truncated and tampered model files, decompression bombs, and the command line's exit statuses."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from noveltykit import detectors
from noveltykit.cli import main
from noveltykit.data import sources
from noveltykit.data.cache import store_verified
from noveltykit.data.checksums import ChecksumError, FileSpec
from noveltykit.data.sources import DatasetSpec, DataDirSource, SourceFailed
from noveltykit.detectors import ModelFileError
from noveltykit.experiments import bench
from noveltykit.experiments.bench import BenchConfig, BenchFailed, run_benchmark
from noveltykit.detectors.specs import MethodSpec
from noveltykit.fileio import remove_tree_inside, safe_name

from conftest import make_blobs_dataset

WORKER = Path(__file__).with_name("bench_worker.py")
CELLS = 3  # blobs: 3 classes, seed 0, per method


def _worker(out, methods, fit_log, slow="0.2"):
    env = {**os.environ, "FIT_LOG": str(fit_log), "SLOW_SECONDS": slow, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), str(out), *methods], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _results(out):
    return json.loads((Path(out) / "results.json").read_text())["results"]


def _fits(fit_log):
    return Path(fit_log).read_text().splitlines() if Path(fit_log).exists() else []


# --- many writers, one folder --------------------------------------------------------------------

def test_two_processes_share_one_out_and_lose_nothing(tmp_path):
    out, log = tmp_path / "run", tmp_path / "fits.log"
    methods = ["slow-knn:k=3", "slow-knn:k=5"]
    a = _worker(out, methods, log)
    b = _worker(out, list(reversed(methods)), log)
    for p in (a, b):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    results = _results(out)
    assert len(results) == 2 * CELLS
    assert len({bench.cell_key(r) for r in results}) == 2 * CELLS, "every cell once"
    fits = [line.rsplit(" ", 1)[0] for line in _fits(log)]
    assert len(fits) == len(set(fits)) == 2 * CELLS, "no cell was fitted twice"
    assert len(list((out / "cells").glob("*.json"))) == 2 * CELLS


def test_sigkilled_bench_resumes_with_nothing_lost_or_duplicated(tmp_path):
    out, log = tmp_path / "run", tmp_path / "fits.log"
    methods = ["slow-knn:k=3", "slow-knn:k=5"]
    victim = _worker(out, methods, log, slow="0.4")
    deadline = time.monotonic() + 60
    while len(list((out / "cells").glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    # the cell files are what a finished cell leaves; results.json is rebuilt from them after each
    # one, so a kill between the two leaves it a cell behind (the rerun rebuilds it)
    finished_before = len([p for p in (out / "cells").glob("*.json") if not p.name.endswith(".failed.json")])
    assert 2 <= finished_before < 2 * CELLS and len(_results(out)) >= finished_before - 1
    again = _worker(out, methods, log)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    results = _results(out)
    assert len(results) == len({bench.cell_key(r) for r in results}) == 2 * CELLS
    fits = [line.rsplit(" ", 1)[0] for line in _fits(log)]
    # the rerun fitted exactly the cells that were not finished (one of them may have been in progress)
    assert len(set(fits)) == 2 * CELLS and len(fits) - 2 * CELLS <= 1


def test_a_failing_cell_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    ds = make_blobs_dataset()
    real_run_cell = bench.run_cell

    def breaks_on_class_1(ds_, protocol, cls, *args, **kwargs):
        if cls == 1:
            raise RuntimeError("boom in class 1")
        return real_run_cell(ds_, protocol, cls, *args, **kwargs)

    monkeypatch.setattr(bench, "run_cell", breaks_on_class_1)
    cfg = BenchConfig(dataset="blobs", methods=["knn:k=3", "pca"], out=str(tmp_path), plots=False)
    with pytest.raises(BenchFailed, match="boom in class 1") as err:
        run_benchmark(cfg, dataset=ds, progress=False)
    assert len(err.value.failures) == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["results"]) == 4 and {r["class"] for r in saved["results"]} == {0, 2}
    assert {f["class"] for f in saved["failed"]} == {1} and "RuntimeError" in saved["failed"][0]["traceback"]
    monkeypatch.setattr(bench, "run_cell", real_run_cell)  # fixed: the rerun does only the failed cells
    results = run_benchmark(cfg, dataset=ds, progress=False)
    assert len(results) == 6
    assert json.loads((tmp_path / "results.json").read_text())["failed"] == []


def test_a_run_that_finished_nothing_leaves_the_folder_free(tmp_path, monkeypatch):
    ds = make_blobs_dataset()
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("always")))
    first = BenchConfig(dataset="blobs", methods=["knn"], classes=[0], out=str(tmp_path), val_fraction=0.2)
    with pytest.raises(BenchFailed):
        run_benchmark(first, dataset=ds, progress=False)
    assert not (tmp_path / "experiment.json").exists()
    monkeypatch.undo()
    good = BenchConfig(dataset="blobs", methods=["knn"], classes=[0], out=str(tmp_path), val_fraction=0.1)
    assert len(run_benchmark(good, dataset=ds, progress=False)) == 1
    assert json.loads((tmp_path / "experiment.json").read_text())["val_fraction"] == 0.1


def test_val_fraction_zero_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        BenchConfig(dataset="blobs", methods=["knn"], out=str(tmp_path), val_fraction=0)
    assert not tmp_path.joinpath("experiment.json").exists()


def test_a_folder_from_before_cells_is_adopted(tmp_path):
    ds = make_blobs_dataset()
    cfg = BenchConfig(dataset="blobs", methods=["knn"], classes=[0, 1], out=str(tmp_path), plots=False)
    run_benchmark(cfg, dataset=ds, progress=False)
    for p in (tmp_path / "cells").iterdir():  # an old folder had results.json only
        p.unlink()
    (tmp_path / "cells").rmdir()
    cfg.classes = [0, 1, 2]
    results = run_benchmark(cfg, dataset=ds, progress=False)
    assert len(results) == 3 and len(list((tmp_path / "cells").glob("*.json"))) == 3


# --- paths from user text ----------------------------------------------------------------------

HOSTILE = ["../../escape", "/etc/passwd", "a/../../b", "..", ".hidden", "x" * 300, "teacher_dir=/abs/p/../q"]


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_names_stay_one_plain_component(text):
    name = safe_name(text)
    assert "/" not in name and name not in (".", "..") and not name.startswith(".") and len(name) <= 60
    assert name != safe_name(text + "!"), "different texts, different names"


def test_hostile_labels_write_only_inside_out(tmp_path):
    ds = make_blobs_dataset()
    out = tmp_path / "deep" / "out"
    specs = [MethodSpec("knn", (("k", 3),), alias=label) for label in HOSTILE]
    cfg = BenchConfig(dataset="blobs", methods=specs, classes=[0], out=str(out), save_models=True)
    results = run_benchmark(cfg, dataset=ds, progress=False)
    assert sorted(r["method"] for r in results) == sorted(HOSTILE)
    outside = [p for p in tmp_path.rglob("*") if out not in (p, *p.parents) and p != out.parent]
    assert outside == []
    for r in results:
        for key in ("plot", "model"):
            assert (out / r[key]).resolve().is_relative_to(out.resolve())
    assert not Path("/etc/passwd.npz").exists()


def test_deletes_refuse_paths_outside_their_root(tmp_path):
    (tmp_path / "root" / "inside").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    for bad in (tmp_path / "keep", tmp_path / "root" / ".." / "keep", tmp_path / "root"):
        with pytest.raises(ValueError, match="refusing"):
            remove_tree_inside(tmp_path / "root", bad)
    remove_tree_inside(tmp_path / "root", tmp_path / "root" / "inside")
    assert (tmp_path / "keep").exists() and not (tmp_path / "root" / "inside").exists()


# --- saved models ----------------------------------------------------------------------------

@pytest.fixture
def saved_knn(tmp_path):
    ds = make_blobs_dataset()
    det = detectors.make("knn", k=3).fit(ds.train_x[ds.train_y == 0])
    return det.save(tmp_path / "model"), ds


def test_truncated_weights_are_a_clear_error(saved_knn):
    path, _ = saved_knn
    weights = path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="weights.safetensors: sha256 differs"):
        detectors.load(path)
    config = json.loads((path / "config.json").read_text())  # a schema-1 save carried no hash
    del config["weights_sha256"], config["schema"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="weights.safetensors: not a readable safetensors file"):
        detectors.load(path)


@pytest.mark.parametrize("key", ["detector", "params", "threshold_", "input_shape_"])
def test_config_missing_a_key_names_file_and_key(saved_knn, key):
    path, _ = saved_knn
    config = json.loads((path / "config.json").read_text())
    del config[key]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=rf"config.json: missing key '{key}'"):
        detectors.load(path)


def test_tampered_and_foreign_model_files(saved_knn):
    from safetensors.torch import load_file, save_file
    import hashlib

    path, _ = saved_knn
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "schema": 99}))
    with pytest.raises(ModelFileError, match="schema 99"):
        detectors.load(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        detectors.load(path)
    tensors = {f"renamed.{k}": v for k, v in load_file(path / "weights.safetensors").items()}
    save_file(tensors, path / "weights.safetensors")
    sha = hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps({**config, "weights_sha256": sha}))
    with pytest.raises(ModelFileError, match="missing tensor"):
        detectors.load(path)
    with pytest.raises(ModelFileError, match="no such folder"):
        detectors.load(path / "nope")


def test_save_refuses_a_folder_with_other_files(tmp_path, saved_knn):
    _, ds = saved_knn
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    det = detectors.make("knn", k=3).fit(ds.train_x[ds.train_y == 0])
    with pytest.raises(ValueError, match="holds other files"):
        det.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_interrupted_save_keeps_the_old_model(saved_knn, monkeypatch):
    path, ds = saved_knn
    before = detectors.load(path).decision_function(ds.test_x)
    other = detectors.make("knn", k=1).fit(ds.train_x[ds.train_y == 1])
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(detectors.load(path).decision_function(ds.test_x), before)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"], "no temp folder left"


KILL_SAVER = """
import sys, itertools
sys.path.insert(0, {tests!r})
from conftest import make_blobs_dataset
from noveltykit import detectors
ds = make_blobs_dataset(n_train=4000, size=32, channels=3)
models = [detectors.make("knn", k=k).fit(ds.train_x[ds.train_y == c]) for k, c in ((3, 0), (5, 1))]
models[1].save({path!r})  # an old model is there before the first kill, whatever the machine's speed
print("ready", flush=True)
for m in itertools.cycle(models):
    m.save({path!r})
"""


def test_sigkilled_save_leaves_old_or_new_never_half(tmp_path):
    path = tmp_path / "model"
    script = KILL_SAVER.format(tests=str(Path(__file__).parent), path=str(path))
    rng = np.random.default_rng(0)
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.3, 1.0))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        loaded = detectors.load(path)  # checks the weights against the config's sha256
        assert loaded.get_params()["k"] in (3, 5)


# --- downloads -------------------------------------------------------------------------------------

def test_gzip_bomb_stops_at_the_expected_size(tmp_path, monkeypatch, isolated_data_env):
    raw = b"\0" * (64 << 20)  # 64 MiB of zeros, about 64 KiB gzipped
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "blob.bin.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    spec = DatasetSpec("toy", files=(FileSpec("blob.bin", sha256="0" * 64, size=1000),))
    unpacked = []

    class CountingGzip(gzip.GzipFile):
        def read(self, size=-1):
            chunk = super().read(size)
            unpacked.append(len(chunk))
            return chunk

    monkeypatch.setattr(sources.gzip, "GzipFile", CountingGzip)
    with pytest.raises(SourceFailed, match="more than 1,000 bytes"):
        DataDirSource(tmp_path / "data", "test").fetch(spec, list(spec.files), progress=False)
    assert sum(unpacked) == 1001, "one byte past the known size, no more"
    assert not list((tmp_path / "cache").rglob("blob.bin*"))


def test_store_verified_never_reads_past_a_known_size(tmp_path):
    def endless():
        while True:
            yield b"x" * 4096

    with pytest.raises(ChecksumError, match="more than"):
        store_verified(tmp_path / "f", endless(), FileSpec("f", sha256="0" * 64, size=10_000))
    with pytest.raises(ChecksumError, match="size mismatch"):
        store_verified(tmp_path / "f", iter([b"short"]), FileSpec("f", sha256="0" * 64, size=10_000))
    assert list(tmp_path.iterdir()) == []


# --- the command line -------------------------------------------------------------------------

def _no_traceback(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "noveltykit: error:" in err, err
    return err


def test_cli_exit_statuses_for_known_failures(tmp_path, capsys, saved_knn, monkeypatch, isolated_data_env):
    path, _ = saved_knn
    assert main(["bench", "--dataset", "nosuchset", "--method", "knn", "--out", str(tmp_path / "o")]) == 2
    _no_traceback(capsys)
    assert main(["bench", "--dataset", "mnist", "--method", "knn:k=0", "--out", str(tmp_path / "o")]) == 2
    _no_traceback(capsys)
    assert main(["data", "fetch", "--dataset", "mnist"]) == 3  # offline, empty cache
    assert "could not get" in _no_traceback(capsys)
    (path / "weights.safetensors").write_bytes(b"garbage")
    assert main(["export", str(path), "--out", str(tmp_path / "m.onnx")]) == 5
    assert "weights.safetensors" in _no_traceback(capsys)
    (tmp_path / "bad.onnx").write_bytes(b"\x00not onnx")
    assert main(["set-threshold", str(tmp_path / "bad.onnx"), "1.0"]) == 5
    _no_traceback(capsys)
    assert main(["distill", "--teacher", str(tmp_path / "nothing"), "--dataset", "mnist", "--class", "3",
                 "--out", str(tmp_path / "d")]) == 5
    _no_traceback(capsys)
    with pytest.raises(ModelFileError):  # --debug: the traceback, anywhere on the line
        main(["set-threshold", str(tmp_path / "bad.onnx"), "1.0", "--debug"])


def test_cli_failed_cells_exit_with_their_status(tmp_path, capsys, monkeypatch):
    from noveltykit.train.stabilisers import TrainingDiverged
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for sub, n in (("train", 12), ("test/normal", 4), ("test/novel", 4)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / sub / f"{i}.png")
    argv = ["bench", "--dataset", f"folder:{root}", "--method", "knn", "pca", "--classes", "normal",
            "--out", str(tmp_path / "o"), "--quiet", "--no-plots"]
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: (_ for _ in ()).throw(TrainingDiverged("nan loss")))
    assert main(argv) == 4  # every cell diverged: the diverged status
    assert "2 cell(s) failed" in _no_traceback(capsys)
    calls = []

    def mixed(*a, **k):
        calls.append(1)
        raise TrainingDiverged("nan") if len(calls) == 1 else RuntimeError("a bug")

    monkeypatch.setattr(bench, "run_cell", mixed)
    assert main(argv) == 1
    _no_traceback(capsys)


# --- bf16 on CPUs without it, and the teacher cache key ------------------------------------------

def test_bf16_falls_back_with_one_warning_where_the_cpu_lacks_it(monkeypatch):
    from noveltykit.train import precision
    from noveltykit.train.gan_unit import GAN
    from noveltykit.train.gan import GANConfig

    cfg = GANConfig(width=4, precision="bf16")
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(precision, "_warned", False)
    with pytest.warns(RuntimeWarning, match="trains in fp32"):
        assert GAN(cfg).bf16 is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GAN(cfg).bf16 is False, "warned once only"
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert GAN(cfg).bf16 is True and GAN(GANConfig(width=4)).bf16 is False


def test_native_bf16_needs_the_kernels_that_use_it():
    import torch
    from noveltykit.train.precision import native_bf16_cpu

    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        assert native_bf16_cpu() is False  # e.g. under ATEN_CPU_CAPABILITY=avx2 on any CPU


def test_teacher_key_follows_resolved_values_not_preset_names(monkeypatch):
    import torch
    from noveltykit.detectors.ede_gan import EDEGANDetector, teacher_key
    from noveltykit.detectors.kdgan import KDGANDetector
    from noveltykit.train import gan

    x, x_val = torch.zeros(4, 1, 32, 32), torch.ones(2, 1, 32, 32)
    student = KDGANDetector(teacher_budget="quick")
    key = teacher_key(EDEGANDetector(**student.teacher_params()), x, x_val)
    # the same values spelt out as overrides: the same teacher
    spelt = EDEGANDetector(budget="quick", norm="instance", lr=2e-4, ema_decay=0.99)
    assert teacher_key(spelt, x, x_val) == key
    monkeypatch.setitem(gan.PRESETS, "default", {**gan.PRESETS["default"], "lr": 1e-4})
    assert teacher_key(EDEGANDetector(**student.teacher_params()), x, x_val) != key, "preset changed meaning"
    monkeypatch.undo()
    monkeypatch.setattr("noveltykit.detectors.ede_gan.TRAINING_CODE_VERSION", 999)
    assert teacher_key(EDEGANDetector(**student.teacher_params()), x, x_val) != key, "training code changed"


def test_a_schema_2_save_with_run_settings_in_its_params_loads(saved_knn):
    import hashlib

    path, ds = saved_knn
    config = json.loads((path / "config.json").read_text())
    config["schema"] = 2
    config["params"].update(checkpoint_dir=None, resume=False, progress=False, device="cpu")
    (path / "config.json").write_text(json.dumps(config))
    assert detectors.load(path).get_params() == detectors.make("knn", k=3).get_params()
    config["schema"] = 3  # today's schema: run settings among the params are an error
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="unknown parameter"):
        detectors.load(path)
    assert hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest() == config["weights_sha256"]
