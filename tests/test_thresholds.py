"""Thresholds a user can set and trust: set-threshold on a model folder, score --threshold q0.99,
fit --threshold-quantile, the card's false-alarm interval and its warning, one validation split
rule for fit and bench."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import noveltykit.detectors as nd
from noveltykit.detectors.thresholds import false_alarm_rate, parse_threshold, too_few_above

SIZE = 8


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noveltykit.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _write_images(folder, n, seed, shift=0):
    """n grey SIZExSIZE PNGs of one kind: smooth noise around a fixed pattern (shift: another kind)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = np.linspace(60, 190, SIZE * SIZE).reshape(SIZE, SIZE) + shift
    for i in range(n):
        img = np.clip(base + rng.normal(0, 25, (SIZE, SIZE)), 0, 255).astype(np.uint8)
        Image.fromarray(img, mode="L").save(folder / f"{i:04d}.png")
    return folder


def _main(*args, capsys=None) -> tuple[int, str, str]:
    """The CLI in this process (faster than a subprocess, for the checks around the one each test runs)."""
    from noveltykit.cli import main
    code = main([str(a) for a in args])
    out = capsys.readouterr() if capsys else None
    return code, out.out if out else "", out.err if out else ""


def _config(model) -> dict:
    return json.loads((model / "config.json").read_text())


def test_parse_threshold_forms():
    assert parse_threshold("15") == ("score", 15.0) and parse_threshold(-0.5) == ("score", -0.5)
    assert parse_threshold("q0.99") == ("quantile", 0.99) and parse_threshold("Q1") == ("quantile", 1.0)
    for bad in ("99%", "q1.5", "q0", "nan", "inf", "x"):
        with pytest.raises(ValueError, match="q0.99"):
            parse_threshold(bad)


def test_false_alarm_interval_matches_the_binomial_and_widens_with_fewer_images():
    fa = false_alarm_rate(np.arange(100.0), 94.5)  # 5 of 100 above
    assert (fa["above"], fa["n"], fa["rate"]) == (5, 100, 0.05)
    assert fa["low"] == pytest.approx(0.01643, abs=1e-4) and fa["high"] == pytest.approx(0.11284, abs=1e-4)
    small = false_alarm_rate(np.arange(20.0), 18.5)  # 1 of 20
    assert small["high"] - small["low"] > fa["high"] - fa["low"]
    assert false_alarm_rate(np.arange(10.0), 100)["low"] == 0.0
    assert too_few_above(np.arange(60.0), np.quantile(np.arange(60.0), 0.99)) is not None
    assert too_few_above(np.arange(1000.0), np.quantile(np.arange(1000.0), 0.95)) is None


def test_set_threshold_on_a_folder_and_score_q_flag_the_expected_share(tmp_path):
    train = _write_images(tmp_path / "train", 60, seed=0)
    val = _write_images(tmp_path / "val", 400, seed=1)
    held_out = _write_images(tmp_path / "held_out", 400, seed=2)  # normal images neither fit nor threshold saw
    model = tmp_path / "model"
    run = _cli("fit", "--method", "knn", "--train", train, "--val", val, "--out", model, "--image-size", SIZE,
               "--threshold-quantile", "0.9", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "false alarms to expect 10.0%" in run.stdout and _config(model)["params"]["threshold_quantile"] == 0.9
    weights = _config(model)["weights_sha256"]

    run = _cli("set-threshold", model, "q0.8")
    assert run.returncode == 0, run.stderr
    config = _config(model)
    assert config["weights_sha256"] == weights  # only the threshold changed
    assert config["threshold_from"]["quantile"] == 0.8 and "set-threshold" in config["threshold_from"]["set_by"]
    assert config["threshold_from"]["previous"]["quantile"] == 0.9
    assert config["threshold_"] == pytest.approx(np.quantile(config["validation_scores"], 0.8))
    assert "0.8 quantile" in (model / "README.md").read_text()
    out = tmp_path / "scores.csv"
    assert _main("score", model, held_out, "--out", out, "--quiet") == (0, "", "")
    flagged = np.array([line.split(",")[3] == "True" for line in out.read_text().splitlines()[1:]])
    assert len(flagged) == 400 and 0.13 < flagged.mean() < 0.27  # about 20% of normal images above q0.8

    out99 = tmp_path / "scores99.csv"
    assert _cli("score", model, held_out, "--out", out99, "--threshold", "q0.99", "--quiet").returncode == 0
    rows = out99.read_text().splitlines()[1:]
    assert float(rows[0].split(",")[2]) == pytest.approx(np.quantile(config["validation_scores"], 0.99))
    assert np.mean([r.split(",")[3] == "True" for r in rows]) < 0.04  # about 1%


def test_set_threshold_by_score_records_it_and_refuses_what_it_cannot_do(tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 255, (60, 1, SIZE, SIZE), dtype=np.uint8)
    det = nd.make("knn").fit(x[:20], x[20:])
    det.save(tmp_path / "m")
    code, out, _ = _main("set-threshold", tmp_path / "m", "123.5", capsys=capsys)
    assert code == 0 and "-> 123.5" in out
    assert nd.load(tmp_path / "m").threshold_from_["score"] == 123.5
    assert "a score given by hand" in (tmp_path / "m" / "README.md").read_text()
    code, _, err = _main("set-threshold", tmp_path / "nothing", "q0.9", capsys=capsys)
    assert code == 2 and "no such model folder or ONNX file" in err
    code, _, err = _main("set-threshold", tmp_path / "m", "99%", capsys=capsys)
    assert code == 2 and "q0.99" in err
    # a model saved before the validation scores were kept takes a score, not a quantile
    config = _config(tmp_path / "m")
    del config["validation_scores"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="keeps no validation scores"):
        nd.load(tmp_path / "m").threshold_for("q0.9")
    assert nd.load(tmp_path / "m").threshold_for(7) == 7.0


def test_the_card_warns_when_too_few_validation_images_lie_above(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (80, 1, SIZE, SIZE), dtype=np.uint8)
    with pytest.warns(UserWarning, match="only 1 of 20 normal validation images score above"):
        det = nd.make("knn", threshold_quantile=0.99).fit(x[:60], x[60:])
    card = det.save(tmp_path / "m") / "README.md"
    text = card.read_text()
    assert "1 of 20 validation images above the threshold; 95% interval 0.1% to 24.9%" in text
    assert "**warning**" in text
    fa = det.expected_false_alarms()
    assert fa["n"] == 20 and fa["above"] == 1 and fa["rate"] == 0.05


def test_fit_and_bench_hold_out_the_same_images_and_give_the_same_threshold(tmp_path):
    root = tmp_path / "parts"
    _write_images(root / "train", 50, seed=0)
    _write_images(root / "test" / "normal", 10, seed=1)
    _write_images(root / "test" / "novel", 10, seed=2, shift=40)
    code, _, _ = _main("fit", "--method", "knn", "--train", root / "train", "--out", tmp_path / "fitted",
                       "--image-size", SIZE, "--seed", "3", "--quiet")
    assert code == 0
    run = _cli("bench", "--dataset", f"folder:{root}", "--method", "knn", "--classes", "normal", "--seeds", "3",
               "--image-size", SIZE, "--save-models", "--no-plots", "--quiet", "--out", tmp_path / "bench")
    assert run.returncode == 0, run.stderr
    benched = json.loads((tmp_path / "bench" / "results.json").read_text())["results"][0]
    fitted = _config(tmp_path / "fitted")
    assert fitted["threshold_"] == benched["threshold"]
    assert fitted["validation_scores"] == _config(tmp_path / "bench" / benched["model"])["validation_scores"]
