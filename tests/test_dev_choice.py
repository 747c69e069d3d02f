"""benchmarks/dev_choice.py: the fixed rule that picks a student setting on the development split."""
import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "dev_choice", Path(__file__).resolve().parents[1] / "benchmarks" / "dev_choice.py")
choice = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(choice)


def _rows(values: dict[float, list[float]]):
    return [{"dataset": "d", "lr": lr, "dev_auroc_last": a} for lr, aurocs in values.items() for a in aurocs]


def test_the_higher_mean_wins_whatever_its_single_best_run():
    best, means = choice.choose(_rows({0.0002: [0.99, 0.60], 0.002: [0.90, 0.88]}))
    assert best == 0.002 and means[0.0002] == pytest.approx(0.795)
    assert choice.choose(_rows({0.0002: [0.95, 0.93], 0.002: [0.99, 0.85]}))[0] == 0.0002


def test_a_tie_keeps_the_student_preset():
    preset = choice.PRESETS["student"]["lr"]
    other = preset / 10
    assert choice.choose(_rows({other: [0.9, 0.8], preset: [0.8, 0.9]}))[0] == preset
    assert choice.choose(_rows({preset: [0.8, 0.9], other: [0.9, 0.8]}))[0] == preset


def test_one_rate_is_no_choice():
    with pytest.raises(ValueError, match="two settings"):
        choice.choose(_rows({0.002: [0.9]}))


def test_variants_tie_to_the_first_listed_and_the_alone_spec_gets_both_steps_epochs():
    rows = [{"dataset": "d", "variant": v, "dev_auroc_last": a}
            for v, a in [("kdgan:structure=p23,width=1", 0.8), ("kdgan:structure=p23,width=1,epochs=24", 0.9),
                         ("kdgan:structure=p23,width=1", 0.9), ("kdgan:structure=p23,width=1,epochs=24", 0.8)]]
    assert choice.choose(rows, "variant")[0] == "kdgan:structure=p23,width=1"
    rows[0]["dev_auroc_last"] = 0.7
    assert choice.choose(rows, "variant")[0] == "kdgan:structure=p23,width=1,epochs=24"
    assert choice.alone_spec("kdgan:structure=p23,width=1,epochs=24,lr=0.002,ema_decay=0.999") == \
        "ede-gan:width=1,epochs=48,lr=0.002,ema_decay=0.999"
    assert choice.alone_spec("kdgan:structure=p23,width=2,lr=0.002") == "ede-gan:width=2,epochs=16,lr=0.002"
    with pytest.raises(ValueError, match="progressive"):
        choice.alone_spec("kdgan:structure=2,width=1")


def test_files_pool_and_only_variants_pool_datasets(tmp_path, monkeypatch, capsys):
    import json
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"dataset": "mnist", "variant": "x", "lr": 0.1, "dev_auroc_last": 0.9}) + "\n"
                 + json.dumps({"dataset": "mnist", "variant": "y", "lr": 0.2, "dev_auroc_last": 0.8}) + "\n")
    b.write_text(json.dumps({"dataset": "cifar", "variant": "x", "lr": 0.1, "dev_auroc_last": 0.5}) + "\n"
                 + json.dumps({"dataset": "cifar", "variant": "y", "lr": 0.2, "dev_auroc_last": 0.7}) + "\n")
    monkeypatch.setattr("sys.argv", ["dev_choice", str(a), str(b), "--by", "variant"])
    choice.main()
    assert capsys.readouterr().out.strip().splitlines()[-1] == "y", "0.75 over both datasets beats 0.70"
    monkeypatch.setattr("sys.argv", ["dev_choice", str(a), str(b), "--by", "lr"])
    with pytest.raises(SystemExit, match="one dataset"):
        choice.main()
