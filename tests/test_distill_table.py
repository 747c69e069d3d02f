"""benchmarks/distill_table.py: the means, drops and ratios it prints for Tables V and VI."""
import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "distill_table", Path(__file__).resolve().parents[1] / "benchmarks" / "distill_table.py")
distill_table = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(distill_table)


def _record(method, cls, auroc, width=None, teacher_auroc=None, detector="ede-gan"):
    r = {"dataset": "mnist", "seed": 0, "method": method, "class": cls, "auroc": auroc,
         "detector": detector, "params": {"width": width}}
    if teacher_auroc is not None:
        r["teacher_auroc"] = teacher_auroc
    return r


def _write(folder: Path, records):
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"results": records}))
    return str(folder)


def test_means_drops_and_ratios_over_common_classes(tmp_path):
    a = _write(tmp_path / "a", [_record("ede-gan", 0, 0.90), _record("ede-gan", 1, 0.80),
                                _record("kd", 0, 0.95, 2, 0.90, "kdgan")])
    b = _write(tmp_path / "b", [_record("kd", 1, 0.70, 2, 0.80, "kdgan"), _record("ede-gan", 2, 0.5)])
    text = distill_table.table(distill_table.load([a, b], seed=0), "ede-gan", ["kd"])
    assert "Classes 0, 1 " in text  # class 2 has no student: left out
    teacher_row = next(line for line in text.splitlines() if line.startswith("| ede-gan |"))
    student_row = next(line for line in text.splitlines() if line.startswith("| kd |"))
    assert "| 0.8500 |" in teacher_row and "| 1.00x | 1.00x |" in teacher_row
    # mean (0.95 + 0.70) / 2 = 0.825: 2.50 points below the teacher; above it on class 0 only
    assert "| 0.8250 | +2.50 | 1 of 2 |" in student_row
    assert "| 50.97x | 315.43x |" in student_row  # u=2 on one channel, as `noveltykit profile` counts


def test_a_student_of_another_teacher_is_refused(tmp_path):
    a = _write(tmp_path / "a", [_record("ede-gan", 0, 0.90), _record("kd", 0, 0.95, 2, 0.91, "kdgan")])
    with pytest.raises(SystemExit, match="not the same teacher"):
        distill_table.table(distill_table.load([a], seed=0), "ede-gan", ["kd"])
    b = _write(tmp_path / "b", [_record("ede-gan", 0, 0.90), _record("kd", 0, 0.95, 2, 0.90 + 1e-4, "kdgan")])
    with pytest.raises(SystemExit, match="not the same teacher"):
        distill_table.table(distill_table.load([b], seed=0), "ede-gan", ["kd"])


def test_the_same_teacher_rescored_on_a_gpu_passes(tmp_path):
    a = _write(tmp_path / "a", [_record("ede-gan", 0, 0.90, 64), _record("kd", 0, 0.95, 2, 0.90 - 6e-7, "kdgan")])
    assert "kd" in distill_table.table(distill_table.load([a], seed=0), "ede-gan", ["kd"])
