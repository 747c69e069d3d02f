"""`fit` on a folder of one's own normal images, `score` new files: end to end through the CLI,
and every error path of scoring (a bad file, a grey image to a colour model, a wrong model folder)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltykit.cli import main
from noveltykit.data.imagespec import ImageSpec

pytestmark = pytest.mark.usefixtures("isolated_data_env")


def stripes(vertical: bool, size: int, rng) -> np.ndarray:
    """A colour image of stripes with noise: normal = vertical, novel = horizontal."""
    img = np.zeros((size, size, 3), np.float64)
    period = max(2, size // 8)
    band = (np.arange(size) // period) % 2
    img[:] = (band[None, :] if vertical else band[:, None])[..., None] * np.array([200, 120, 40])
    img += rng.normal(0, 20, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def write(folder: Path, n: int, vertical: bool, size: int, seed: int, fmt: str = "png") -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i:03d}.{fmt}"
        Image.fromarray(stripes(vertical, size, rng)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def model(tmp_path):
    write(tmp_path / "normal" / "a", 20, True, 40, 0)
    write(tmp_path / "normal" / "b", 20, True, 128, 1, "jpg")  # two sizes and formats, one rule
    assert main(["fit", "--method", "knn:k=3", "--train", str(tmp_path / "normal"), "--out",
                 str(tmp_path / "model"), "--quiet"]) == 0
    return tmp_path / "model"


def test_fit_writes_a_model_that_records_its_preprocessing(model, tmp_path):
    config = json.loads((model / "config.json").read_text())
    assert config["preprocessing"]["size"] == 32 and config["preprocessing"]["channels"] == 3
    assert config["schema"] == 4 and config["training"]["n_train"] + config["training"]["n_validation"] == 40
    assert config["training"]["data"]["classes"] == ["a", "b"]  # the subfolders, for detectors that use them
    assert "torch" in config["versions"] and (model / "README.md").read_text().startswith("# noveltykit model")


def test_score_flags_the_novel_files_and_reports_a_bad_one(model, tmp_path, capsys):
    new = tmp_path / "new"
    normal = write(new / "normal", 6, True, 64, 5)
    novel = write(new / "novel", 6, False, 64, 6)
    (new / "broken.png").write_bytes(b"not an image")
    grey = new / "grey.png"
    Image.fromarray(stripes(True, 48, np.random.default_rng(7))[..., 0]).save(grey)  # grey, to a colour model
    out = tmp_path / "scores.csv"
    assert main(["score", str(model), str(new), "--out", str(out), "--report", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    rows = {Path(r["path"]).relative_to(new).as_posix(): r for r in csv.DictReader(out.open())}
    assert len(rows) == 14
    assert "not an image file" in rows["broken.png"]["error"] and rows["broken.png"]["score"] == ""
    assert rows["grey.png"]["error"] == "" and rows["grey.png"]["score"] != ""  # converted, not refused
    novel_flags = [rows[f"novel/{p.name}"]["is_novel"] for p in novel]
    normal_flags = [rows[f"normal/{p.name}"]["is_novel"] for p in normal]
    assert novel_flags == ["True"] * 6 and normal_flags.count("True") <= 1
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "most novel" in page and "broken.png" in page and "13 images scored" in page
    assert page.count("<figure>") == 2 * 13  # both galleries hold every scored image (fewer than 16)
    n_novel = sum(r["is_novel"] == "True" for r in rows.values())
    assert capsys.readouterr().err.startswith(f"13 scored, {n_novel} novel, 1 unreadable")


def test_score_jsonl_and_a_threshold_of_ones_own(model, tmp_path):
    files = write(tmp_path / "x", 3, False, 32, 9)
    out = tmp_path / "s.jsonl"
    assert main(["score", str(model), *map(str, files), "--out", str(out), "--threshold", "1e9", "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["threshold"] for r in rows] == [1e9] * 3 and not any(r["is_novel"] for r in rows)


def test_score_refuses_a_wrong_model_folder_and_a_bad_out(tmp_path, model, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["score", str(tmp_path / "empty"), str(tmp_path)]) != 0
    assert "config.json" in capsys.readouterr().err
    assert main(["score", str(model), str(tmp_path), "--out", str(tmp_path / "s.txt")]) != 0
    assert ".csv or .jsonl" in capsys.readouterr().err


def test_image_spec_converts_channels_both_ways():
    grey = np.full((1, 4, 4), 100, np.uint8)
    assert ImageSpec(4, 3).conform(grey).shape == (3, 4, 4)
    rgb = np.stack([np.full((4, 4), v, np.uint8) for v in (255, 0, 0)])
    assert ImageSpec(4, 1).conform(rgb)[0, 0, 0] == round(0.299 * 255)
    with pytest.raises(ValueError, match="differ"):
        ImageSpec.from_dict({**ImageSpec(4, 1).to_dict(), "scaling": "uint8 / 255"})


def test_score_refuses_a_memory_folder_that_is_not_there(model, tmp_path, capsys):
    files = write(tmp_path / "x", 1, False, 32, 3)
    assert main(["score", str(model), str(files[0]), "--memory", str(tmp_path / "typo")]) == 2
    assert "no novelty memory there" in capsys.readouterr().err


def test_fit_reads_images_at_a_feature_detectors_own_size(tmp_path):
    from conftest import needs_weights
    if needs_weights.args[0]:
        pytest.skip(needs_weights.kwargs["reason"])
    write(tmp_path / "normal", 12, True, 80, 0)
    assert main(["fit", "--method", "feat-knn:size=64,k=2", "--train", str(tmp_path / "normal"), "--out",
                 str(tmp_path / "m"), "--quiet"]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["preprocessing"]["size"] == 64 and config["input_shape_"] == [3, 64, 64]
    assert main(["fit", "--method", "knn", "--train", str(tmp_path / "normal"), "--out", str(tmp_path / "k"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "k" / "config.json").read_text())["preprocessing"]["size"] == 32
