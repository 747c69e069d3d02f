"""CIFAR-10 readers on tiny synthetic archives: binary, python (restricted unpickling), JPEG copy."""
import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noveltykit.data import DataUnavailableError, load_dataset
from noveltykit.data import datasets
from noveltykit.data.cache import cache_root
from noveltykit.data.checksums import ChecksumError, FileSpec
from noveltykit.data.cifar import (CIFAR10_CLASSES, RECORD, load_cifar_python_tar, parse_cifar_binary,
                                   parse_cifar_pickle)
from noveltykit.data.sources import EnvFileSource


@pytest.fixture(autouse=True)
def offline_env(isolated_data_env, monkeypatch):
    # never let a test find (and decode) the real shared JPEG copy: only the env-var mirror stays
    monkeypatch.setattr(datasets, "CIFAR10_JPEG", dataclasses.replace(
        datasets.CIFAR10_JPEG, mirrors=(EnvFileSource("NOVELTYKIT_CIFAR10_JPEG"),)))


def records(labels: list[int], seed: int = 0) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    data = b"".join(bytes([label]) + img.tobytes() for label, img in zip(labels, images))
    return data, images


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- binary version --------------------------------------------------------------------------------

def test_parse_binary_records():
    data, images = records([3, 0, 9])
    x, y = parse_cifar_binary(data)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y.tolist() == [3, 0, 9]
    np.testing.assert_array_equal(x, images)
    # channel planes: red first (bytes 1..1024 of a record)
    assert x[0, 0, 0, 0] == data[1] and x[0, 1, 0, 0] == data[1 + 1024] and x[0, 2, 31, 31] == data[RECORD - 1]


def test_parse_binary_rejects_bad_data():
    data, _ = records([1, 2])
    with pytest.raises(ValueError, match="whole number"):
        parse_cifar_binary(data[:-1])
    with pytest.raises(ValueError, match="label 200 out of range"):
        parse_cifar_binary(bytes([200]) + data[1:])


def make_binary_tarball(path: Path) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], None
    with tarfile.open(path, "w:gz") as tar:
        for i in range(1, 6):
            data, images = records([i, i + 1], seed=i)
            add_bytes(tar, f"cifar-10-batches-bin/data_batch_{i}.bin", data)
            train.append(images)
        data, test = records([4], seed=9)
        add_bytes(tar, "cifar-10-batches-bin/test_batch.bin", data)
        add_bytes(tar, "cifar-10-batches-bin/batches.meta.txt", b"airplane\n")
    return np.concatenate(train), test


def test_exact_cifar10_from_binary_archive(tmp_path, monkeypatch):
    archive = tmp_path / "data" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    train, test = make_binary_tarball(archive)
    monkeypatch.setattr(datasets, "CIFAR10_BINARY", dataclasses.replace(
        datasets.CIFAR10_BINARY, files=(FileSpec(archive.name, md5=md5(archive)),)))
    ds = load_dataset("cifar10", str(archive.parent), progress=False)
    assert ds.name == "cifar10" and ds.class_names == CIFAR10_CLASSES
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (1, 3, 32, 32)
    assert ds.train_y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6] and ds.test_y.tolist() == [4]
    np.testing.assert_array_equal(ds.train_x, train)
    np.testing.assert_array_equal(ds.test_x, test)
    # the wrong md5 means the archive is not used at all
    monkeypatch.setattr(datasets, "CIFAR10_BINARY", dataclasses.replace(
        datasets.CIFAR10_BINARY, files=(FileSpec(archive.name, md5="0" * 32),)))
    with pytest.raises(DataUnavailableError, match="md5 mismatch"):
        load_dataset("cifar10", str(archive.parent), progress=False)


# --- python version: pickles, loaded with a restricted unpickler --------------------------------------

def test_parse_pickle_batch():
    images = np.random.default_rng(0).integers(0, 256, (2, 3072), dtype=np.uint8)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        batch = pickle.dumps({b"batch_label": b"x", b"labels": [5, 7], b"data": images}, protocol=protocol)
        x, y = parse_cifar_pickle(batch)
        assert x.shape == (2, 3, 32, 32) and y.tolist() == [5, 7]
        np.testing.assert_array_equal(x.reshape(2, -1), images)
    # the real batches were written by numpy 1 (module numpy.core.multiarray): accepted too
    old = pickle.dumps({b"labels": [1], b"data": images[:1]}, protocol=2)
    assert b"cnumpy._core.multiarray\n" in old
    x, y = parse_cifar_pickle(old.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    np.testing.assert_array_equal(x.reshape(1, -1), images[:1])


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        parse_cifar_pickle(pickle.dumps({b"data": Evil(), b"labels": [1]}))
    assert not (tmp_path / "pwned").exists()


def test_python_archive_checked_before_unpickling(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    batch = pickle.dumps({b"labels": [1], b"data": np.zeros((1, 3072), np.uint8)}, protocol=2)
    with tarfile.open(archive, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            add_bytes(tar, f"cifar-10-batches-py/{name}", batch)
    train_x, train_y, test_x, test_y = load_cifar_python_tar(archive, FileSpec(archive.name, md5=md5(archive)))
    assert train_x.shape == (5, 3, 32, 32) and test_y.tolist() == [1]
    with pytest.raises(ChecksumError, match="not unpickling"):
        load_cifar_python_tar(archive, FileSpec(archive.name, md5="f" * 32))


# --- JPEG copy ------------------------------------------------------------------------------------

COLOURS = {("train", "cat", 0): (250, 0, 0), ("train", "cat", 1): (0, 250, 0), ("train", "airplane", 0): (0, 0, 250),
           ("train", "truck", 0): (128, 128, 128), ("test", "cat", 0): (255, 255, 255), ("test", "truck", 0): (0, 0, 0)}


def make_jpeg_tarball(path: Path, readme: bytes = b"not an image, not in train/ or test/") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "README.txt", readme)
        for (split, cls, number), colour in sorted(COLOURS.items(), key=lambda kv: -kv[0][2]):  # 0001 before 0000
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), colour).save(buf, format="JPEG", quality=95)
            add_bytes(tar, f"{split}/{cls}/{number:04d}.jpg", buf.getvalue())
    return path


@pytest.fixture
def tiny_jpeg(tmp_path, monkeypatch):
    tarball = make_jpeg_tarball(tmp_path / "cifar10-jpeg.tar.gz")
    spec = dataclasses.replace(datasets.CIFAR10_JPEG, files=(
        FileSpec(tarball.name, sha256=hashlib.sha256(tarball.read_bytes()).hexdigest()),))
    monkeypatch.setattr(datasets, "CIFAR10_JPEG", spec)
    monkeypatch.setenv("NOVELTYKIT_CIFAR10_JPEG", str(tarball))
    return tarball


def test_jpeg_copy_decodes_in_class_then_number_order(tiny_jpeg):
    ds = load_dataset("cifar10-jpeg", progress=False)
    assert ds.name == "cifar10-jpeg" and ds.class_names == CIFAR10_CLASSES
    assert ds.train_x.shape == (4, 3, 32, 32) and ds.train_x.dtype == np.uint8
    assert ds.train_y.tolist() == [0, 3, 3, 9] and ds.test_y.tolist() == [3, 9]
    expected = [COLOURS[("train", "airplane", 0)], COLOURS[("train", "cat", 0)], COLOURS[("train", "cat", 1)],
                COLOURS[("train", "truck", 0)]]
    assert np.abs(ds.train_x[:, :, 16, 16].astype(int) - np.array(expected)).max() <= 6
    assert "JPEG" in ds.info["note"]


def test_jpeg_decoded_cache_is_used_then_rebuilt_when_corrupt_or_stale(tiny_jpeg, monkeypatch):
    first = load_dataset("cifar10-jpeg", progress=False)
    decoded = cache_root() / "cifar10-jpeg" / "decoded"
    assert (decoded / "decoded.json").is_file() and (decoded / "train_x.npy").is_file()
    # warm: served from the decoded cache, even with every tarball gone
    monkeypatch.delenv("NOVELTYKIT_CIFAR10_JPEG")
    (cache_root() / "cifar10-jpeg" / "cifar10-jpeg.tar.gz").unlink()
    warm = load_dataset("cifar10-jpeg", progress=False)
    assert warm.source.startswith("decoded cache")
    np.testing.assert_array_equal(warm.train_x, first.train_x)
    # corrupt .npy: detected by its sha256 and rebuilt from the tarball
    monkeypatch.setenv("NOVELTYKIT_CIFAR10_JPEG", str(tiny_jpeg))
    npy = decoded / "train_x.npy"
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF
    npy.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt; rebuilding"):
        rebuilt = load_dataset("cifar10-jpeg", progress=False)
    assert not rebuilt.source.startswith("decoded cache")
    np.testing.assert_array_equal(rebuilt.train_x, first.train_x)
    # stale: decoded from another tarball than the one now expected
    other = make_jpeg_tarball(tiny_jpeg.parent / "other" / "cifar10-jpeg.tar.gz", readme=b"another version")
    monkeypatch.setenv("NOVELTYKIT_CIFAR10_JPEG", str(other))
    monkeypatch.setattr(datasets, "CIFAR10_JPEG", dataclasses.replace(datasets.CIFAR10_JPEG, files=(
        FileSpec("cifar10-jpeg.tar.gz", sha256=hashlib.sha256(other.read_bytes()).hexdigest()),)))
    (cache_root() / "cifar10-jpeg" / "cifar10-jpeg.tar.gz").unlink()
    with pytest.warns(UserWarning, match="another tarball; rebuilding"):
        load_dataset("cifar10-jpeg", progress=False)


def test_cifar10_falls_back_to_jpeg_copy_and_says_so(tiny_jpeg):
    ds = load_dataset("cifar10", progress=False)
    assert ds.name == "cifar10-jpeg" and ds.info["fallback_from"] == "cifar10"


def test_cifar10_unavailable_lists_exact_and_jpeg_sources(monkeypatch):
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("cifar10", progress=False)
    msg = str(err.value)
    for expected in ("cifar-10-binary.tar.gz", "download https://www.cs.toronto.edu/~kriz/{name}: skipped",
                     "cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz", "$NOVELTYKIT_CIFAR10_JPEG: not set",
                     "NOVELTYKIT_CIFAR10_JPEG=/path/to/cifar10-jpeg.tar.gz"):
        assert expected in msg, expected


def test_jpeg_tarball_with_foreign_class_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        add_bytes(tar, "train/unicorn/0000.jpg", b"x")
    monkeypatch.setattr(datasets, "CIFAR10_JPEG", dataclasses.replace(datasets.CIFAR10_JPEG, files=(
        FileSpec(bad.name, sha256=hashlib.sha256(bad.read_bytes()).hexdigest()),)))
    with pytest.raises(ValueError, match="unknown class folder in train/unicorn/0000.jpg"):
        load_dataset("cifar10-jpeg", str(tmp_path), progress=False)
