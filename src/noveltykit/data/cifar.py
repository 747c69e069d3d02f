"""CIFAR-10 readers: the original binary and python archives, and the JPEG copy (with a decoded cache).

Every reader returns (train_x, train_y, test_x, test_y): uint8 (N, 3, 32, 32) and int64 labels.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..fileio import atomic_write
from .checksums import ChecksumError, FileSpec, file_sha256

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
RECORD = 1 + 3 * 32 * 32  # binary format: 1 label byte, then 1024 red, 1024 green, 1024 blue bytes

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --- original binary version (cifar-10-binary.tar.gz): plain bytes, no pickle ---------------------

def parse_cifar_binary(data: bytes, where: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """One `*.bin` batch -> (uint8 (N, 3, 32, 32), int64 (N,))."""
    if len(data) == 0 or len(data) % RECORD:
        raise ValueError(f"{where}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR records")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise ValueError(f"{where}: label {labels.max()} out of range 0-9 (not a CIFAR-10 batch?)")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _members_by_basename(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}


def load_cifar_binary_tar(path: str | Path) -> Arrays:
    """Read cifar-10-binary.tar.gz (checksum already verified by the caller)."""
    with tarfile.open(path, "r:gz") as tar:
        members = _members_by_basename(tar)

        def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
            if name + ".bin" not in members:
                raise ValueError(f"{path}: no {name}.bin inside")
            return parse_cifar_binary(tar.extractfile(members[name + ".bin"]).read(), f"{path}:{name}.bin")

        train = [batch(name) for name in TRAIN_BATCHES]
        test_x, test_y = batch(TEST_BATCH)
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y


# --- original python version (cifar-10-python.tar.gz): pickles, so only load verified bytes --------

def _numpy_core(submodule: str, name: str):
    """numpy.core.<submodule>.<name> under numpy 2's name (numpy._core) or numpy 1's."""
    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


class BatchUnpickler(pickle.Unpickler):
    """Unpickler that can build the dicts of arrays CIFAR batches hold and nothing else.

    A pickle can call any importable function; this one resolves only numpy's array constructors
    (and the bytes decoder python 3 pickles use), so a tampered file fails loudly instead.
    """

    NUMPY_CORE = {("multiarray", "_reconstruct"), ("numeric", "_frombuffer")}
    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        for prefix in ("numpy._core.", "numpy.core."):
            if module.startswith(prefix) and (module[len(prefix):], name) in self.NUMPY_CORE:
                return _numpy_core(module[len(prefix):], name)
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not allowed in a CIFAR batch")
        return super().find_class(module, name)


def parse_cifar_pickle(data: bytes, where: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """One python-version batch -> (uint8 (N, 3, 32, 32), int64 (N,))."""
    batch = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError(f"{where}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    images = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(images, np.ndarray) or labels is None:
        raise ValueError(f"{where}: not a CIFAR batch (no data/labels)")
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
    return images, labels


def load_cifar_python_tar(path: str | Path, spec: FileSpec) -> Arrays:
    """Read cifar-10-python.tar.gz. The checksum is checked on the very bytes that get unpickled."""
    data = Path(path).read_bytes()
    got = hashlib.new(spec.algorithm, data).hexdigest()
    if got != spec.digest:
        raise ChecksumError(f"{path}: {spec.algorithm} mismatch (expected {spec.digest}, got {got}); not unpickling")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = _members_by_basename(tar)

        def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
            if name not in members:
                raise ValueError(f"{path}: no {name} inside")
            return parse_cifar_pickle(tar.extractfile(members[name]).read(), f"{path}:{name}")

        train = [batch(name) for name in TRAIN_BATCHES]
        test_x, test_y = batch(TEST_BATCH)
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y


# --- JPEG copy (cifar10-jpeg.tar.gz): train/<class>/NNNN.jpg, test/<class>/NNNN.jpg -----------------

def decode_jpeg_tarball(path: str | Path, progress: bool = True) -> Arrays:
    """Decode every JPEG. Order: by class, then file number (the original order within a class)."""
    found: dict[str, list[tuple[int, int, np.ndarray]]] = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tar:  # streamed: one pass over the gzip
        for member in tqdm(tar, desc="decoding CIFAR-10 JPEGs", unit="img", mininterval=1.0, disable=not progress):
            parts = member.name.removeprefix("./").split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in found:
                continue
            split, cls, fname = parts
            if cls not in CIFAR10_CLASSES:
                raise ValueError(f"{path}: unknown class folder in {member.name}")
            stem = fname.rsplit(".", 1)[0]
            if not stem.isdigit():
                raise ValueError(f"{path}: {member.name} is not named NNNN.jpg")
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                pixels = np.asarray(im.convert("RGB"))
            if pixels.shape != (32, 32, 3):
                raise ValueError(f"{path}: {member.name} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32")
            found[split].append((CIFAR10_CLASSES.index(cls), int(stem), pixels))
    out = []
    for split, items in found.items():
        if not items:
            raise ValueError(f"{path}: no {split}/<class>/NNNN.jpg images inside")
        items.sort(key=lambda t: (t[0], t[1]))
        keys = [(label, number) for label, number, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{path}: duplicate image numbers in {split}/")
        out.append(np.stack([p for _, _, p in items]).transpose(0, 3, 1, 2).copy())
        out.append(np.array([label for label, _, _ in items], dtype=np.int64))
    return out[0], out[1], out[2], out[3]


DECODED_FORMAT = 1
DECODED_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def load_decoded(folder: Path, tarball_sha256: str) -> Arrays | None:
    """The cached decoded arrays, or None when absent, stale (other tarball) or corrupt."""
    meta_path = folder / "decoded.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != DECODED_FORMAT or meta.get("tarball_sha256") != tarball_sha256:
            warnings.warn(f"{folder}: decoded cache is from another tarball; rebuilding", stacklevel=2)
            return None
        arrays = []
        for name in DECODED_ARRAYS:
            path = folder / f"{name}.npy"
            if file_sha256(path) != meta["sha256"][name]:
                warnings.warn(f"{path}: decoded cache file is corrupt; rebuilding", stacklevel=2)
                return None
            arrays.append(np.load(path, allow_pickle=False))
    except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable json/npy counts as corrupt
        warnings.warn(f"{folder}: decoded cache unreadable ({e}); rebuilding", stacklevel=2)
        return None
    return arrays[0], arrays[1], arrays[2], arrays[3]


def save_decoded(folder: Path, tarball_sha256: str, arrays: Arrays) -> None:
    """Write the arrays, then the JSON sidecar last: the sidecar is what marks the cache complete."""
    hashes = {}
    for name, array in zip(DECODED_ARRAYS, arrays):
        with atomic_write(folder / f"{name}.npy") as f:
            np.save(f, array, allow_pickle=False)
        hashes[name] = file_sha256(folder / f"{name}.npy")
    meta = {"format": DECODED_FORMAT, "tarball_sha256": tarball_sha256, "sha256": hashes,
            "shapes": {name: list(a.shape) for name, a in zip(DECODED_ARRAYS, arrays)}}
    with atomic_write(folder / "decoded.json") as f:
        f.write(json.dumps(meta, indent=1).encode())
