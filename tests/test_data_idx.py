"""The IDX parser, and MNIST-format loading end to end on a tiny fake dataset (offline)."""
import dataclasses
import gzip
import hashlib
import struct

import numpy as np
import pytest

from noveltykit.data import DataUnavailableError, dataset_info, fetch_dataset, load_dataset
from noveltykit.data import datasets
from noveltykit.data.cache import cache_root
from noveltykit.data.checksums import FileSpec
from noveltykit.data.idx import IdxError, parse_idx, read_idx


pytestmark = pytest.mark.usefixtures("isolated_data_env")


def idx_bytes(array: np.ndarray) -> bytes:
    """Hand-built IDX: 0, 0, type byte, ndim, big-endian dims, big-endian data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_parse_uint8_images():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + images.tobytes()
    out = parse_idx(data)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_parse_big_endian_int16_to_native(tmp_path):
    values = np.array([1, -2, 300, -32768], dtype=np.int16)
    (tmp_path / "v").write_bytes(idx_bytes(values))
    out = read_idx(tmp_path / "v")
    np.testing.assert_array_equal(out, values)
    assert out.dtype.isnative and out.flags.writeable


@pytest.mark.parametrize("data, message", [
    (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "bad magic.*gzipped"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "unknown IDX type"),
    (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "header needs 16 bytes"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2, 3]), "needs 5 data bytes, file has 3"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 3]), "needs 2 data bytes, file has 3"),
    (bytes([0, 0, 0x08]), "too short"),
    (bytes([0, 0, 0x08, 0]), "zero dimensions"),
])
def test_malformed_idx_is_refused(data, message, tmp_path):
    (tmp_path / "bad-idx").write_bytes(data)
    with pytest.raises(IdxError, match=message) as err:
        read_idx(tmp_path / "bad-idx")
    assert "bad-idx" in str(err.value)


# --- a tiny MNIST in the real file format, behind the real loader --------------------------------

@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """Gzipped IDX files in DIR/mnist/ and the MNIST spec patched to their checksums."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 1], dtype=np.uint8),
        "t10k-images-idx3-ubyte": np.full((3, 28, 28), 200, dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([7, 1, 1], dtype=np.uint8),
    }
    folder = tmp_path / "user-data" / "mnist"
    folder.mkdir(parents=True)
    files = []
    for name, array in arrays.items():
        raw = idx_bytes(array)
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        files.append(FileSpec(name, sha256=hashlib.sha256(raw).hexdigest()))
    monkeypatch.setattr(datasets, "MNIST", dataclasses.replace(datasets.MNIST, files=tuple(files)))
    return tmp_path / "user-data", arrays


def test_load_mnist_format_from_data_dir_then_cache(tiny_mnist, monkeypatch):
    data_dir, arrays = tiny_mnist
    ds = load_dataset("mnist", str(data_dir), progress=False)
    assert ds.name == "mnist" and ds.class_names == [str(i) for i in range(10)]
    assert ds.train_x.shape == (12, 1, 32, 32) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (3, 1, 32, 32)
    assert ds.train_y.dtype == np.int64 and ds.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert (ds.test_x == 200).all()  # constant 28x28 stays constant at 32x32
    assert "data dir" in ds.source
    # the .gz files were unpacked, verified, into the cache: the next load needs no data dir
    assert (cache_root() / "mnist" / "train-images-idx3-ubyte").is_file()
    ds2 = load_dataset("mnist", progress=False)
    assert ds2.source.startswith("cache ")
    np.testing.assert_array_equal(ds.train_x, ds2.train_x)


def test_data_dir_from_env_and_raw_files_used_in_place(tiny_mnist, monkeypatch):
    data_dir, arrays = tiny_mnist
    for name, array in arrays.items():  # raw files straight in DIR (not DIR/mnist/)
        (data_dir / name).write_bytes(idx_bytes(array))
    monkeypatch.setenv("NOVELTYKIT_DATA", str(data_dir))
    # DIR/mnist/ holds only .gz, DIR holds raw; either way the bytes are the same
    ds = load_dataset("mnist", progress=False)
    assert "$NOVELTYKIT_DATA" in ds.source and ds.train_x.shape == (12, 1, 32, 32)


def test_wrong_file_in_data_dir_is_reported(tiny_mnist, monkeypatch):
    data_dir, _ = tiny_mnist
    (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("mnist", str(data_dir), progress=False)
    assert "t10k-labels-idx1-ubyte: sha256 mismatch" in str(err.value)


def test_fetch_and_info(tiny_mnist):
    data_dir, _ = tiny_mnist
    info = dataset_info("mnist")
    assert info["loaded"] is False and not any(f["cached"] for f in info["files"])
    summary = fetch_dataset("mnist", str(data_dir), progress=False)
    assert summary["dataset"] == "mnist" and len(summary["files"]) == 4
    assert all(f["verified"] and f["bytes"] > 0 for f in summary["files"])
    info = dataset_info("mnist")
    assert all(f["cached"] and f["sha256_ok"] for f in info["files"])
    assert info["loaded"] and info["class_counts"]["1"] == {"train": 3, "test": 2}
    # info reports a corrupt file without deleting it
    path = cache_root() / "mnist" / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"corrupt")
    info = dataset_info("mnist", load=False)
    assert [f["sha256_ok"] for f in info["files"]] == [True, True, True, False]
    assert path.read_bytes() == b"corrupt"
