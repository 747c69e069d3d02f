"""benchmarks/cell_records.py: the per-cell figures the docs quote beside `noveltykit report`'s."""
import importlib.util
import json
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "cell_records", Path(__file__).resolve().parents[1] / "benchmarks" / "cell_records.py")
cell_records = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cell_records)


def test_rows_give_size_memory_and_the_loss_ratio_per_cell_in_class_order(tmp_path):
    cell = {"seed": 0, "n_train": 4500, "process_peak_rss_gib": 1.234}
    trained = dict(cell, **{"class": 1, "history": [{"val_loss": 150.0}, {"val_loss": 20.0}, {"val_loss": 2.0}]})
    frozen = dict(cell, **{"class": 0, "seed": 1})
    (tmp_path / "results.json").write_text(json.dumps({"results": [trained, frozen]}))
    name = tmp_path.name
    assert cell_records.rows(tmp_path, None) == [
        f"| {name} | 1 | 0 | 4500 | 1.23 | 150.00 | 2.00 | 75.0x |",
        f"| {name} | 0 | 1 | 4500 | 1.23 | - | - | - |"]
    assert cell_records.rows(tmp_path, {1}) == [f"| {name} | 0 | 1 | 4500 | 1.23 | - | - | - |"]
