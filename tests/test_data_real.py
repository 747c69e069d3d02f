"""Real datasets from the default cache (filled by `make data` / `noveltykit data fetch`); skipped
when absent. Never fetches: offline and allow_fetch=False."""
import numpy as np
import pytest

from noveltykit.data import load_dataset
from noveltykit.data.cache import dataset_cache_dir
from noveltykit.data.datasets import IDX_FILES

pytestmark = pytest.mark.realdata


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("NOVELTYKIT_OFFLINE", "1")
    monkeypatch.delenv("NOVELTYKIT_DATA", raising=False)


def need_cached(key: str, names) -> None:
    folder = dataset_cache_dir(key)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        pytest.skip(f"{key} not in the cache {folder} (run `noveltykit data fetch --dataset {key}`)")


def test_real_mnist():
    need_cached("mnist", IDX_FILES)
    ds = load_dataset("mnist", allow_fetch=False, progress=False)
    assert ds.train_x.shape == (60000, 1, 32, 32) and ds.test_x.shape == (10000, 1, 32, 32)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    assert np.bincount(ds.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.train_x.max() == 255 and abs(ds.train_x.mean() / 255 - 0.1307) < 0.002  # the usual MNIST mean


def test_real_fashion_mnist():
    need_cached("fashion-mnist", IDX_FILES)
    ds = load_dataset("fmnist", allow_fetch=False, progress=False)
    assert ds.train_x.shape == (60000, 1, 32, 32) and ds.test_x.shape == (10000, 1, 32, 32)
    assert np.bincount(ds.train_y).tolist() == [6000] * 10 and np.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.class_names[9] == "Ankle boot"


def test_real_cifar10_jpeg():
    need_cached("cifar10-jpeg", ["decoded/decoded.json"])  # decoding from scratch is too slow for tests
    ds = load_dataset("cifar10-jpeg", allow_fetch=False, progress=False)
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert np.bincount(ds.train_y).tolist() == [5000] * 10 and np.bincount(ds.test_y).tolist() == [1000] * 10
    mean = ds.train_x.mean(axis=(0, 2, 3)) / 255
    np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=2e-4)  # the README's measured means


def test_fit_score_loop_on_real_sneakers_written_as_files(tmp_path):
    """The practitioner's loop on real images: Fashion-MNIST sneakers written out as PNG at 40x40
    and JPEG at 128x128 are the normal folder; new sneakers, and bags, are scored from files."""
    from PIL import Image

    from noveltykit.cli import main
    from noveltykit.analysis.metrics import auroc
    need_cached("fashion-mnist", IDX_FILES)
    ds = load_dataset("fashion-mnist", allow_fetch=False, progress=False)

    def write(images, folder, size, fmt):
        folder.mkdir(parents=True)
        for i, im in enumerate(images):
            Image.fromarray(im[0]).resize((size, size), Image.BILINEAR).save(folder / f"{i:04d}.{fmt}")

    sneakers, bags = ds.train_x[ds.train_y == 7], ds.test_x[ds.test_y == 8]
    write(sneakers[:150], tmp_path / "normal" / "png40", 40, "png")
    write(sneakers[150:300], tmp_path / "normal" / "jpg128", 128, "jpg")
    write(ds.test_x[ds.test_y == 7][:40], tmp_path / "new" / "sneakers", 40, "png")
    write(bags[:40], tmp_path / "new" / "bags", 128, "jpg")
    assert main(["fit", "--method", "knn", "--train", str(tmp_path / "normal"), "--out", str(tmp_path / "m"),
                 "--quiet"]) == 0
    out = tmp_path / "s.jsonl"
    assert main(["score", str(tmp_path / "m"), str(tmp_path / "new"), "--out", str(out), "--quiet"]) == 0
    import json
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    is_bag = np.array(["bags" in r["path"] for r in rows])
    scores = np.array([r["score"] for r in rows])
    assert len(rows) == 80 and not any(r["error"] for r in rows)
    assert auroc(is_bag, scores) > 0.95  # bags are far from sneakers at any resolution
    assert np.mean([r["is_novel"] for r in rows if "bags" in r["path"]]) > 0.8
