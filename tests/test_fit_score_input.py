"""A newcomer's first hour, through the CLI in a subprocess: `fit` skips what is not an image and
(with --skip-unreadable) what cannot be read, listing each; `score` exits non-zero on a path that
does not exist (the other rows still written), says in a `converted` column when it changed an
image's channels, and says a file is not a model folder."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltykit.apply.fit import fit_folder
from noveltykit.cli import EXIT_MODEL, EXIT_USAGE
from noveltykit.data.folder import load_training_folder
from noveltykit.detectors import ModelFileError, load

from test_apply import stripes, write

pytestmark = pytest.mark.usefixtures("isolated_data_env")


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noveltykit.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def grey(folder: Path, n: int, seed: int) -> list[Path]:
    """Grey images (the first channel of `stripes`)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"g{i:02d}.png" for i in range(n)]
    for p in paths:
        Image.fromarray(stripes(True, 40, rng)[..., 0]).save(p)
    return paths


def test_fit_skips_a_file_that_is_not_an_image_and_lists_it(tmp_path):
    write(tmp_path / "normal", 20, True, 40, 0)
    (tmp_path / "normal" / "readme.txt").write_text("fifty photos of the good parts")
    (tmp_path / "normal" / "notes").mkdir()
    (tmp_path / "normal" / "notes" / "labels.csv").write_text("a,b\n")
    run = cli("fit", "--method", "knn:k=3", "--train", tmp_path / "normal", "--out", tmp_path / "m", "--quiet")
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("skipped"))
    assert line == (f"skipped 2 file(s) in {tmp_path / 'normal'}: notes/labels.csv (not an image file by its "
                    "extension), readme.txt (not an image file by its extension)")
    data = json.loads((tmp_path / "m" / "config.json").read_text())["training"]["data"]
    assert data["n_files"] == 20 and data["n_skipped"] == 2
    assert data["skipped"] == [{"path": "notes/labels.csv", "reason": "not an image file by its extension"},
                               {"path": "readme.txt", "reason": "not an image file by its extension"}]
    card = (tmp_path / "m" / "README.md").read_text()
    assert "- files skipped in the training folder: 2\n" in card
    assert "  - `readme.txt`: not an image file by its extension" in card and "`notes/labels.csv`" in card


def test_fit_stops_on_an_unreadable_image_unless_told_to_skip_it(tmp_path):
    write(tmp_path / "normal", 20, True, 40, 0)
    (tmp_path / "normal" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    (tmp_path / "normal" / "readme.txt").write_text("hello")
    run = cli("fit", "--method", "knn:k=3", "--train", tmp_path / "normal", "--out", tmp_path / "m", "--quiet")
    assert run.returncode == EXIT_USAGE
    assert f"{tmp_path / 'normal' / 'corrupt.png'}: " in run.stderr and "--skip-unreadable" in run.stderr
    assert not (tmp_path / "m").exists()

    run = cli("fit", "--method", "knn:k=3", "--train", tmp_path / "normal", "--out", tmp_path / "m", "--quiet",
              "--skip-unreadable")
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("skipped"))
    assert line.startswith(f"skipped 2 file(s) in {tmp_path / 'normal'}: corrupt.png (")
    assert line.endswith("), readme.txt (not an image file by its extension)")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    data = config["training"]["data"]
    assert [s["path"] for s in data["skipped"]] == ["corrupt.png", "readme.txt"] and data["n_skipped"] == 2
    assert data["skipped"][0]["reason"] and "corrupt.png" not in data["skipped"][0]["reason"]
    assert config["training"]["n_train"] + config["training"]["n_validation"] == 20
    assert "  - `corrupt.png`: " in (tmp_path / "m" / "README.md").read_text()


def test_training_folder_rules_in_python(tmp_path):
    write(tmp_path / "t", 3, True, 20, 0)
    (tmp_path / "t" / "UPPER.PNG").write_bytes((tmp_path / "t" / "000.png").read_bytes())  # any case
    (tmp_path / "t" / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "t" / "a.txt").write_text("x")
    got = load_training_folder(tmp_path / "t", size=8, skip_unreadable=True)
    assert [p.name for p in got.paths] == ["000.png", "001.png", "002.png", "UPPER.PNG"]
    assert got.x.shape == (4, 3, 8, 8)
    assert [(s.path.name, s.reason) for s in got.skipped] == [
        ("a.txt", "not an image file by its extension"), ("bad.jpg", "not an image file Pillow can read")]
    with pytest.raises(ValueError, match="bad.jpg: not an image file Pillow can read"):
        load_training_folder(tmp_path / "t", size=8)
    only_text = tmp_path / "docs"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no images in it .*1 file\(s\) skipped: readme.txt \(not an image"):
        load_training_folder(only_text)
    with pytest.raises(ValueError, match="a.txt: is a file, expected folder of training images"):
        load_training_folder(tmp_path / "t" / "a.txt")


@pytest.fixture
def models(tmp_path):
    """A colour model and a grey one, fitted in this process (the CLI's fit is tested above)."""
    write(tmp_path / "colour", 20, True, 40, 0)
    grey(tmp_path / "grey", 20, 1)
    fit_folder("knn:k=3", tmp_path / "colour", tmp_path / "colour_model", progress=False)
    fit_folder("knn:k=3", tmp_path / "grey", tmp_path / "grey_model", progress=False)
    return tmp_path / "colour_model", tmp_path / "grey_model"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_score_of_a_missing_path_exits_2_and_writes_the_other_rows(models, tmp_path, suffix):
    colour_model, _ = models
    new = write(tmp_path / "new", 2, True, 40, 5)
    grey_file = grey(tmp_path / "g", 1, 6)[0]
    out = tmp_path / f"scores{suffix}"
    missing = tmp_path / "nope.png"
    run = cli("score", colour_model, new[0], missing, grey_file, new[1], "--out", out, "--quiet")
    assert run.returncode == EXIT_USAGE
    assert f"noveltykit: error: no such file or folder: {missing}" in run.stderr
    assert "3 scored" in run.stderr
    if suffix == ".csv":
        rows = list(csv.DictReader(out.open()))
        assert list(rows[0]) == ["path", "score", "threshold", "is_novel", "error", "converted", "map"]
        scored = {"True", "False"}
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        scored = {True, False}
    assert [r["path"] for r in rows] == [str(p) for p in (new[0], missing, grey_file, new[1])]
    assert rows[1]["error"] == f"{missing}: no such file" and rows[1]["converted"] == ""
    assert all(rows[i]["error"] == "" and rows[i]["is_novel"] in scored for i in (0, 2, 3))
    assert [r["converted"] for r in rows] == ["", "", "grey->colour", ""]

    # without --out the rows go to standard output, and the status is the same
    run = cli("score", colour_model, new[0], missing, "--quiet")
    assert run.returncode == EXIT_USAGE and len(list(csv.DictReader(run.stdout.splitlines()))) == 2


def test_score_says_colour_to_grey_and_exits_0_when_every_path_exists(models, tmp_path):
    _, grey_model = models
    colour_files = write(tmp_path / "c", 2, True, 40, 7)
    grey_file = grey(tmp_path / "g", 1, 8)[0]
    run = cli("score", grey_model, tmp_path / "c", grey_file, "--quiet")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(run.stdout.splitlines()))
    assert [r["path"] for r in rows] == [*map(str, colour_files), str(grey_file)]
    assert [r["converted"] for r in rows] == ["colour->grey", "colour->grey", ""]


def test_a_file_given_as_the_model_folder_is_named_as_a_file(models, tmp_path):
    colour_model, _ = models
    image = write(tmp_path / "x", 1, True, 40, 9)[0]
    run = cli("score", colour_model / "config.json", image)
    assert run.returncode == EXIT_MODEL
    assert (f"{colour_model / 'config.json'}: is a file, expected a model folder (the folder holding it, "
            f"{colour_model}?)") in run.stderr
    with pytest.raises(ModelFileError, match="is a file, expected a model folder"):
        load(image)
    with pytest.raises(ModelFileError, match="no such folder"):
        load(tmp_path / "typo")
