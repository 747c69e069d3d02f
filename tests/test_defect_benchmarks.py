"""The two generated benchmarks with masks (benchmarks/surfaces.py, benchmarks/pasted_defects.py)
write the MVTec AD layout that `folder:PATH` reads: every defect image has its mask, aligned, the
mask covers what changed, and the same seed writes the same files."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from noveltykit.data import load_dataset

from conftest import make_blobs_dataset, needs_weights

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_surfaces_load_as_an_mvtec_folder_with_aligned_masks(tmp_path):
    surfaces = _script("surfaces")
    assert surfaces.main([str(tmp_path / "a"), "--textures", "woven,tiles", "--size", "64", "--train", "3",
                          "--good", "2", "--per-defect", "2"]) == 0
    ds = load_dataset(f"folder:{tmp_path / 'a' / 'tiles'}", size=64, progress=False)
    assert len(ds.train_y) == 3 and ds.test_masks.shape == (2 + 5 * 2, 64, 64)
    kinds = list(ds.test_kinds)
    assert kinds.count("good") == 2 and all(kinds.count(d) == 2 for d in surfaces.DEFECTS)
    good = ds.test_kinds == "good"
    assert ds.test_masks[good].sum() == 0 and all(m.sum() > 0 for m in ds.test_masks[~good])
    assert list(ds.test_y[good]) == [0, 0] and set(ds.test_y[~good]) == {1}
    surfaces.main([str(tmp_path / "b"), "--textures", "tiles", "--size", "64", "--train", "3", "--good", "2",
                   "--per-defect", "2"])
    assert _digest(tmp_path / "a" / "tiles") == _digest(tmp_path / "b" / "tiles"), "seeded: the same files"


@pytest.mark.parametrize("defect", ["scratch", "spot", "cut", "stain", "missing"])
def test_each_defect_changes_the_image_inside_its_mask_only(defect):
    surfaces = _script("surfaces")
    rng = np.random.default_rng(3)
    normal = surfaces.woven(96, rng)
    img, mask = surfaces.DEFECT_MAKERS[defect](normal, rng)
    changed = np.abs(img - normal).max(-1) > 1e-9
    assert mask.any() and changed.any()
    assert not (changed & ~mask).any(), "nothing changed outside the mask"
    assert changed[mask].mean() > 0.5, "most of the mask changed"


def test_pasted_defects_take_patches_from_other_test_images(tmp_path, monkeypatch):
    pasted = _script("pasted_defects")
    ds = make_blobs_dataset(n_train=30, n_test=24, channels=3, size=16)
    monkeypatch.setattr(pasted, "load_dataset", lambda name, progress: ds)
    assert pasted.main([str(tmp_path / "p"), "--dataset", "blobs", "--cls", "1", "--size", "32"]) == 0
    loaded = load_dataset(f"folder:{tmp_path / 'p'}", size=32, progress=False)
    n_test = int((ds.test_y == 1).sum())
    assert len(loaded.train_y) == int((ds.train_y == 1).sum()) and len(loaded.test_y) == n_test
    novel = loaded.test_kinds == "pasted"
    assert novel.sum() == n_test - n_test // 2 and loaded.test_masks[~novel].sum() == 0
    areas = loaded.test_masks[novel].reshape(novel.sum(), -1).mean(1)
    assert (areas > 0).all() and (areas < 0.35).all(), "one patch of 10-30% of the side (squared), each"


@needs_weights
def test_a_benchmark_on_generated_surfaces_records_where_the_novelty_is(tmp_path):
    from noveltykit.analysis.report import write_report
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    _script("surfaces").main([str(tmp_path / "s"), "--textures", "tiles", "--size", "64", "--train", "12",
                              "--good", "4", "--per-defect", "2"])
    cfg = BenchConfig(dataset=f"folder:{tmp_path / 's' / 'tiles'}", methods=["patchcore:size=64", "knn"],
                      classes="all", seeds=[0], out=str(tmp_path / "run"), image_size=64, plots=False)
    results = {r["method"]: r for r in run_benchmark(cfg, progress=False)}
    pc, knn = results["patchcore:size=64"], results["knn"]
    assert set(pc["auroc_by_kind"]) == set(_script("surfaces").DEFECTS) == set(knn["auroc_by_kind"])
    assert 0 <= pc["pixel_auroc"] <= 1 and 0 <= pc["pro"] <= 1 and pc["map_seconds"] > 0
    assert "pixel_auroc" not in knn, "a detector without maps gets no pixel metric"
    write_report(tmp_path / "run", list(results.values()))
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Pixel AUROC" in report and "## PRO" in report


@needs_weights
def test_maps_by_kind_draws_one_row_a_kind(tmp_path):
    """benchmarks/maps_by_kind.py on a tiny generated surface: a PNG with a titled row for `good`
    and for each of the five defect kinds (rows of equal height, so the figure's is six of them)."""
    surfaces, figure = _script("surfaces"), _script("maps_by_kind")
    surfaces.main([str(tmp_path / "s"), "--textures", "woven", "--size", "64", "--train", "12", "--good", "2",
                   "--per-defect", "2"])
    out = tmp_path / "kinds.png"
    assert figure.main([str(tmp_path / "s" / "woven"), "--method", "padim:size=64", "--image-size", "64",
                        "--per-kind", "2", "--out", str(out)]) == 0
    from PIL import Image
    height = Image.open(out).size[1]
    ds = load_dataset(f"folder:{tmp_path / 's' / 'woven'}", size=64, progress=False)
    assert sorted(set(ds.test_kinds)) == sorted(["good", *surfaces.DEFECTS])
    row = (height // 6)
    assert height == 6 * row and row > figure.TITLE
