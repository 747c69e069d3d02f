"""Anomaly maps through the toolkit: `score --maps` (overlays at the model's input size, raw maps
as .npy equal to the detector's own, names that never collide, a model without maps refused before
any scoring), the score page's overlays, and a benchmark's grid of each map cell's most and least
novel test images (none for a cell without maps)."""
import csv
import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltykit.analysis.heatmaps import MASK_EDGE, TILE, map_grid, outline
from noveltykit.apply.fit import fit_folder
from noveltykit.apply.score_maps import map_names
from noveltykit.apply.score_rows import COLUMNS, read_for
from noveltykit.cli import EXIT_USAGE, main
from noveltykit.detectors import load

from conftest import needs_weights
from test_apply import write

pytestmark = pytest.mark.usefixtures("isolated_data_env")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def surfaces(root: Path) -> Path:
    """benchmarks/surfaces.py's tiles: 12 normal training images, 4 good and 10 defective test
    images (5 kinds, each folder holding 0000.png and 0001.png), 64 px, with masks."""
    spec = importlib.util.spec_from_file_location("surfaces", BENCHMARKS / "surfaces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(root), "--textures", "tiles", "--size", "64", "--train", "12", "--good", "4",
                        "--per-defect", "2"]) == 0
    return root / "tiles"


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    return surfaces(tmp_path_factory.mktemp("surfaces"))


@pytest.fixture(scope="module")
def map_model(tiles):
    if needs_weights.args[0]:
        pytest.skip(needs_weights.kwargs["reason"])
    out = tiles.parent / "patchcore"
    fit_folder("patchcore:size=64", tiles / "train" / "good", out, progress=False)
    return out


@pytest.fixture(scope="module")
def knn_model(tiles):
    out = tiles.parent / "knn"
    fit_folder("knn:k=2", tiles / "train" / "good", out, progress=False)
    return out


def rows_of(path: Path) -> dict[str, dict]:
    return {r["path"]: r for r in csv.DictReader(path.open())}


# --- score --maps ---------------------------------------------------------------------------------
@needs_weights
def test_score_maps_writes_an_overlay_and_a_raw_map_per_scored_image(map_model, tiles, tmp_path):
    test = tmp_path / "test"
    shutil.copytree(tiles / "test", test)
    (test / "broken.png").write_bytes(b"not an image")
    maps, out = tmp_path / "maps", tmp_path / "rows.csv"
    assert main(["score", str(map_model), str(test), "--maps", str(maps), "--maps-npy", "--out", str(out),
                 "--quiet"]) == 0
    header = out.read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS and header[-1] == "map"  # the old columns in their order, map last
    rows = rows_of(out)
    assert len(rows) == 15 and rows[str(test / "broken.png")]["map"] == ""  # unreadable: no map
    detector = load(map_model)
    scored = sorted(p for p in test.rglob("*.png") if p.name != "broken.png")
    # same-named files of different folders (good/0000.png, cut/0000.png, ...) keep their folders
    assert [Path(rows[str(p)]["map"]) for p in scored] == [maps / p.parent.name / (p.name + ".png") for p in scored]
    assert len(scored) == 14 and len(set(p.name for p in scored)) == 4  # 0000.png in every folder, ...
    for p in scored:
        overlay_path = Path(rows[str(p)]["map"])
        im = Image.open(overlay_path)
        assert im.size == (64, 64) and im.mode == "RGB"  # the model's input size
        raw = np.load(overlay_path.with_suffix(".npy"), allow_pickle=False)
        own = detector.anomaly_map(read_for(detector, p)[None])[0]  # the same image, alone
        assert raw.dtype == np.float32 and raw.shape == (64, 64)
        np.testing.assert_allclose(raw, own, rtol=1e-5, atol=1e-5)
    assert not list(maps.rglob("*.part"))  # written atomically: no temporaries left
    # a defect's map is hotter than a good image's
    cut = np.load(maps / "cut" / "0000.png.npy")
    good = np.load(maps / "good" / "0000.png.npy")
    assert cut.max() > good.max()


@needs_weights
def test_map_names_never_collide_and_jsonl_rows_name_the_overlay(map_model, tmp_path):
    files = write(tmp_path / "new" / "a", 1, True, 64, 0) + write(tmp_path / "new" / "b", 1, True, 64, 1)
    files += write(tmp_path / "new" / "b", 1, False, 64, 2, "jpg")  # b/000.png and b/000.jpg
    assert [f.name for f in files] == ["000.png", "000.png", "000.jpg"]
    out = tmp_path / "rows.jsonl"
    assert main(["score", str(map_model), *map(str, files), "--maps", str(tmp_path / "m"), "--out", str(out),
                 "--quiet"]) == 0
    written = [json.loads(line)["map"] for line in out.read_text().splitlines()]
    assert written == [str(tmp_path / "m" / n) for n in ("a/000.png.png", "b/000.png.png", "b/000.jpg.png")]
    assert all(Path(w).is_file() for w in written) and not list((tmp_path / "m").rglob("*.npy"))
    assert len({Path(w).read_bytes() for w in written}) == 3


def test_map_names_keep_the_folders_below_the_common_one():
    files = [Path("/x/new/a/0.png"), Path("/x/new/b/0.png"), Path("/x/new/b/c/../0.jpg"), Path("/x/extra.png")]
    assert map_names(files) == [Path("new/a/0.png"), Path("new/b/0.png"), Path("new/b/0.jpg"), Path("extra.png")]
    assert map_names([Path("/x/y/one.png")]) == [Path("one.png")]
    names = map_names([Path("/r/a/0.png"), Path("/r/b/0.png")])
    assert len(set(names)) == 2 and not any(".." in n.parts for n in names)


def test_a_model_without_maps_is_refused_before_any_scoring(knn_model, tiles, tmp_path, capsys):
    out, maps = tmp_path / "rows.csv", tmp_path / "maps"
    assert main(["score", str(knn_model), str(tiles / "test"), "--maps", str(maps), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{knn_model} gives no anomaly maps" in err and "detectors that do: " in err and "patchcore" in err
    assert "scoring" not in err and not out.exists() and not maps.exists()  # nothing scored, nothing written
    assert main(["score", str(knn_model), str(tiles / "test"), "--maps-npy"]) == EXIT_USAGE
    assert "give --maps DIR too" in capsys.readouterr().err
    # without --maps the rows have the map column, empty
    assert main(["score", str(knn_model), str(tiles / "test"), "--out", str(out), "--quiet"]) == 0
    assert {r["map"] for r in rows_of(out).values()} == {""}


@needs_weights
def test_the_score_page_shows_each_listed_images_overlay_beside_it(map_model, knn_model, tiles, tmp_path):
    for model, want in ((map_model, True), (knn_model, False)):
        report = tmp_path / model.name
        assert main(["score", str(model), str(tiles / "test"), "--report", str(report), "--quiet"]) == 0
        page = (report / "index.html").read_text()
        assert page.count("<figure>") == 2 * 14
        assert page.count('class="map"') == (2 * 14 if want else 0)
        assert ("pixel threshold" in page) == want


def test_maps_from_an_autoencoder_and_a_model_saved_before_maps(tmp_path, capsys):
    """No pretrained weights needed: a reconstruction detector gives maps too; one saved without a
    pixel threshold (before maps) has no scale to draw them on, and says so."""
    new = write(tmp_path / "normal", 12, True, 32, 0)
    fit_folder("ae:epochs=2,batch_size=8", tmp_path / "normal", tmp_path / "ae", progress=False)
    out = tmp_path / "rows.csv"
    assert main(["score", str(tmp_path / "ae"), *map(str, new[:2]), "--maps", str(tmp_path / "maps"),
                 "--maps-npy", "--out", str(out), "--quiet"]) == 0
    assert [r["map"] for r in rows_of(out).values()] == [str(tmp_path / "maps" / f"{p.name}.png") for p in new[:2]]
    assert Image.open(tmp_path / "maps" / "000.png.png").size == (32, 32)
    assert np.load(tmp_path / "maps" / "001.png.npy").shape == (32, 32)
    config_path = tmp_path / "ae" / "config.json"
    config = json.loads(config_path.read_text())
    del config["pixel_threshold_"], config["map_floor_"]
    config_path.write_text(json.dumps(config))
    assert main(["score", str(tmp_path / "ae"), str(new[0]), "--maps", str(tmp_path / "old")]) == EXIT_USAGE
    assert "saved without a pixel threshold" in capsys.readouterr().err and not (tmp_path / "old").exists()


# --- the benchmark's grid -------------------------------------------------------------------------
def test_a_grid_shows_the_most_and_least_novel_with_their_masks_outlined():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (10, 3, 32, 32), dtype=np.uint8)
    maps = rng.random((10, 32, 32)).astype(np.float32)
    masks = np.zeros((10, 32, 32), np.uint8)
    masks[9, 8:20, 8:20] = 1
    scores = np.arange(10.0)  # image 9 the most novel, 0 the least
    grid = map_grid(images, maps, scores, threshold=2.0, masks=masks)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    assert grid.shape[0] > 2 * TILE and grid.shape[1] > 8 * TILE
    first = grid[:TILE, :TILE]  # image 9, enlarged 3x, its mask's outline in cyan
    assert (first == MASK_EDGE).all(axis=-1).sum() > 0
    assert (grid[-TILE - 20:, :TILE] == MASK_EDGE).all(axis=-1).sum() == 0  # image 0: no mask
    # fewer images than two rows: each shown once
    assert map_grid(images[:3], maps[:3], scores[:3], 2.0).shape[0] < grid.shape[0]
    with pytest.raises(ValueError, match="as many"):
        map_grid(images, maps[:3], scores, 2.0)
    ring = outline(np.zeros((6, 6, 3), np.uint8), np.pad(np.ones((4, 4)), 1))
    assert (ring == MASK_EDGE).all(axis=-1).sum() == 12  # a 4x4 square's edge


@needs_weights
def test_a_benchmark_draws_a_grid_for_each_map_cell_on_a_dataset_with_masks(tiles, tmp_path):
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    run = tmp_path / "run"
    cfg = BenchConfig(dataset=f"folder:{tiles}", methods=["patchcore:size=64", "knn"], classes="all", seeds=[0],
                      out=str(run), image_size=64)
    results = {r["method"]: r for r in run_benchmark(cfg, progress=False)}
    pc, knn = results["patchcore:size=64"], results["knn"]
    assert pc["maps_grid"].startswith("maps/") and pc["maps_grid"].endswith("/class0_seed0.png")
    grid = Image.open(run / pc["maps_grid"])
    assert grid.mode == "RGB" and grid.size[0] > 8 * TILE and grid.size[1] > 2 * TILE
    assert "maps_grid" not in knn and not list((run / "maps").rglob("*knn*"))  # no maps: nothing written
    assert len(list((run / "maps").rglob("*.png"))) == 1
    report = (run / "report.md").read_text()
    assert "## Anomaly maps" in report and f"]({pc['maps_grid']})" in report
    # without plots (bench --no-plots): no grid either
    cfg = BenchConfig(dataset=f"folder:{tiles}", methods=["patchcore:size=64"], classes="all", seeds=[0],
                      out=str(tmp_path / "quiet"), image_size=64, plots=False)
    (record,) = run_benchmark(cfg, progress=False)
    assert "maps_grid" not in record and not (tmp_path / "quiet" / "maps").exists()
    assert "## Anomaly maps" not in (tmp_path / "quiet" / "report.md").read_text()


@needs_weights
def test_a_map_detector_on_a_dataset_without_masks_draws_no_grid(tmp_path):
    from conftest import make_blobs_dataset
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    ds = make_blobs_dataset(n_train=12, n_test=6, n_classes=2, channels=3, size=32)
    cfg = BenchConfig(dataset="blobs", methods=["patchcore:size=64"], classes=[0], seeds=[0],
                      out=str(tmp_path / "run"), image_size=32)
    (record,) = run_benchmark(cfg, dataset=ds, progress=False)
    assert "maps_grid" not in record and not (tmp_path / "run" / "maps").exists()


def test_png_of_a_grid_reads_back():
    from noveltykit.analysis.heatmaps import png_bytes
    grid = map_grid(np.zeros((2, 1, 8, 8), np.uint8), np.zeros((2, 8, 8)), np.array([1.0, 0.0]), 1.0)
    assert Image.open(io.BytesIO(png_bytes(grid))).size == (grid.shape[1], grid.shape[0])
