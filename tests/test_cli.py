"""The command line end to end, on a folder of the user's own images."""
import json

import numpy as np
from PIL import Image

from noveltykit.cli import main

from conftest import make_blobs_dataset, write_folder_dataset


def _write_folder(root, rng):
    write_folder_dataset(root, rng, counts=(40, 15, 15), shape=(20, 24))


def test_bench_on_folder_dataset(tmp_path, capsys):
    _write_folder(tmp_path / "imgs", np.random.default_rng(0))
    out = tmp_path / "run"
    code = main(["bench", "--dataset", f"folder:{tmp_path / 'imgs'}", "--method", "knn:k=2", "pca",
                 "--classes", "normal", "--out", str(out), "--quiet"])
    assert code == 0
    assert "report:" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["method"] for r in results] == ["knn:k=2", "pca"]
    assert all(r["auroc"] > 0.95 and r["n_train"] == 36 and r["n_val"] == 4 for r in results)
    assert results[0]["command"].startswith("noveltykit bench --dataset folder:")
    # rerunning the same command resumes: nothing new is computed
    assert main(["bench", "--dataset", f"folder:{tmp_path / 'imgs'}", "--method", "knn:k=2", "pca",
                 "--classes", "normal", "--out", str(out), "--quiet"]) == 0
    assert len(json.loads((out / "results.json").read_text())["results"]) == 2


def test_errors_are_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NOVELTYKIT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("NOVELTYKIT_DATA", str(tmp_path / "nothing-here"))
    assert main(["bench", "--dataset", "nosuchset", "--method", "knn", "--out", str(tmp_path / "o")]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["bench", "--dataset", "mnist", "--method", "nosuchdet", "--out", str(tmp_path / "o")]) == 2


def test_data_info_reports_missing_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NOVELTYKIT_CACHE", str(tmp_path / "empty-cache"))
    assert main(["data", "info", "--dataset", "fashion-mnist"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "fashion-mnist" and not any(f["cached"] for f in info["files"])


def test_profile_prints_the_teachers_size(capsys):
    assert main(["profile", "--method", "ede-gan", "--width", "64", "--channels", "3"]) == 0
    out = capsys.readouterr().out
    assert "5.1237M params" in out and "55.837M MACs" in out


def test_report_merges_bench_folders(tmp_path, capsys):
    _write_folder(tmp_path / "imgs", np.random.default_rng(1))
    for method, out in (("knn", "a"), ("pca", "b")):
        assert main(["bench", "--dataset", f"folder:{tmp_path / 'imgs'}", "--method", method, "--seeds", "0,1",
                     "--out", str(tmp_path / out), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--seeds", "1"]) == 0
    table = capsys.readouterr().out
    assert "| class | knn | pca |" in table and "±" not in table  # one seed left: no spread
    assert main(["report", str(tmp_path / "a")]) == 0 and "±" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--methods", "pca", "knn"]) == 0
    assert "| class | pca | knn |" in capsys.readouterr().out
    records = json.loads((tmp_path / "a" / "results.json").read_text())
    for r in records["results"]:  # as if on MNIST, where Table IV has published columns
        r.update(dataset="mnist", protocol="one-vs-rest")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "results.json").write_text(json.dumps(records))
    assert main(["report", str(tmp_path / "m"), "--classes", "0"]) == 0 and "paper" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "m"), "--classes", "0", "--no-paper"]) == 0
    assert "paper" not in capsys.readouterr().out
    assert main(["report", str(tmp_path / "a"), "--methods", "kde"]) == 2  # a column that is not there
    # the same cell in two folders would pass for two seeds: refused, with or without filters
    import shutil
    shutil.copytree(tmp_path / "a", tmp_path / "a2")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "a2")]) == 2
    assert "both hold knn" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "a2"), "--methods", "knn", "--seeds", "0"]) == 2


def test_distill_export_and_set_threshold(tmp_path, capsys):
    _write_folder(tmp_path / "imgs", np.random.default_rng(2))
    dataset = f"folder:{tmp_path / 'imgs'}"
    fast = "width=4,epochs=2,batch_size=8"
    assert main(["bench", "--dataset", dataset, "--method", f"ede-gan:{fast}", "--classes", "normal",
                 "--out", str(tmp_path / "t"), "--save-models", "--quiet", "--no-plots"]) == 0
    teacher = tmp_path / "t" / json.loads((tmp_path / "t" / "results.json").read_text())["results"][0]["model"]
    capsys.readouterr()
    args = ["distill", "--teacher", str(teacher), "--dataset", dataset, "--class", "normal", "--width", "1",
            "--structure", "KDGAN-2", "--epochs", "2", "--out", str(tmp_path / "s"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "KDGAN-2 u=1 student AUROC" in out and "teacher AUROC" in out
    record = json.loads((tmp_path / "s" / "results.json").read_text())["results"][0]
    assert record["method"] == "kdgan:structure=2,width=1,preset=student,budget=cpu,epochs=2"
    assert record["params"]["teacher_dir"] == str(teacher.resolve()) and len(record["history"]) == 2
    # the teacher in the student's cell is the saved one: same split, same scores, same AUROC
    teacher_record = json.loads((tmp_path / "t" / "results.json").read_text())["results"][0]
    assert record["teacher_auroc"] == teacher_record["auroc"]
    assert main(args) == 0  # rerun: resumes, nothing recomputed
    assert len(json.loads((tmp_path / "s" / "results.json").read_text())["results"]) == 1

    onnx_path = tmp_path / "student.onnx"
    assert main(["export", str(tmp_path / "s" / record["model"]), "--out", str(onnx_path)]) == 0
    assert f"threshold {record['threshold']!r}" in capsys.readouterr().out
    assert main(["set-threshold", str(onnx_path), "0.25"]) == 0
    assert "-> 0.25" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nothing"), "--out", str(onnx_path)]) == 5  # not a model folder
    assert main(["distill", "--teacher", str(tmp_path / "nothing"), "--dataset", dataset, "--class", "normal",
                 "--out", str(tmp_path / "x")]) == 5
    assert main(["distill", "--teacher", str(teacher), "--dataset", dataset, "--class", "normal",
                 "--device", "tpu", "--out", str(tmp_path / "x")]) == 2
    assert "cpu' or 'cuda" in capsys.readouterr().err and not (tmp_path / "x").exists()  # before any work


def test_profile_gives_compression_ratios(capsys):
    assert main(["profile", "--method", "ede-gan", "--width", "2", "--channels", "1"]) == 0
    generator = capsys.readouterr().out.splitlines()[1]
    assert "0.1004M params" in generator and "50.97x params, 315.43x MACs" in generator


def test_report_keeps_only_the_classes_asked_for(tmp_path, capsys):
    from noveltykit.experiments.bench import BenchConfig, run_benchmark

    from conftest import make_blobs_dataset

    run_benchmark(BenchConfig(dataset="blobs", methods=["knn"], seeds=[0, 1], out=str(tmp_path), plots=False),
                  dataset=make_blobs_dataset(), progress=False)
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--classes", "0,2"]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["0 c0", "2 c2", "**MEAN**"]


def test_certainty_learns_a_folder_datasets_class_subfolders(tmp_path, capsys):
    """train/<class>/... subfolders are the normal classes: `certainty` trains on them. (Novel
    images halfway between the classes: far beyond both, at 220, a classifier is sure of them,
    the report's point about certainty.)"""
    rng, root = np.random.default_rng(0), tmp_path / "imgs"
    for sub, n, base in (("train/bolts", 30, 40), ("train/nuts", 30, 110), ("test/normal", 10, 40),
                         ("test/novel", 10, 75)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            img = np.clip(base + rng.normal(0, 10, (32, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / sub / f"{i}.png")
    from noveltykit.data import load_dataset
    ds = load_dataset(f"folder:{root}", progress=False)
    assert ds.info["train_classes"] == ["bolts", "nuts"] and ds.train_groups.tolist() == [0] * 30 + [1] * 30
    assert ds.train_y.tolist() == [0] * 60, "every training image is still normal"
    out = tmp_path / "run"
    assert main(["bench", "--dataset", f"folder:{root}", "--method", "certainty:epochs=3,batch_size=8",
                 "--classes", "normal", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["results"][0]["auroc"] > 0.9


def test_sweep_chooses_by_its_rule_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("noveltykit.data.load_dataset", lambda *a, **k: make_blobs_dataset(n_train=40))
    out = tmp_path / "sw"
    assert main(["sweep", "--dataset", "blobs", "--method", "knn", "--variant", "knn:k=1", "--classes", "0,1",
                 "--image-size", "8", "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    result = json.loads((out / "sweep.json").read_text())
    assert f"chosen by mean-dev-auroc on the dev split: {result['chosen']['label']}" in said
    assert (out / "sweep.md").exists() and (out / "sweep.png").exists()
    assert main(["sweep", "--dataset", "blobs", "--method", "knn", "--classes", "0", "--out", str(out)]) == 2
    assert "give --grid" in capsys.readouterr().err
