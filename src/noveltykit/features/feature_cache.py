"""On-disk feature cache: the features of one (dataset, split) under one extractor, computed once.

Files live in `<cache>/features/` (`NOVELTYKIT_CACHE`, else `~/.cache/noveltykit`). The name is
a hash of the key (dataset, split, the images' shape, backbone, size, input scaling, stages,
weights sha256, extractor version), so changing any of them computes afresh; the shape keeps one
dataset loaded at 32 and at 128 px (`--image-size`) in two entries, not one overwritten in turn. Each entry is a `.npy` of float32
features and a `.json` with the key, the shape and a sha1 of the images; both are written
atomically, and a file that does not match (other images, another key, damaged) is recomputed.

A long extraction (a large backbone over 60,000 images takes an hour on one core) is written in
parts of `PART_IMAGES` images to `<entry>.parts/` as it goes, so a killed run resumes from its
last whole part; the folder is removed once the entry is written. Several processes asking for
the same entry share the parts (each claimed under a lock, `fileio.run_once`): each first takes
the parts nobody holds, from the last backwards, then waits for the others' and reads them.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

from ..data.cache import cache_root
from ..fileio import BUSY, atomic_write_bytes, atomic_write_json, file_lock, run_once

FEATURES_SUBDIR = "features"
# images a part file holds: a power of two, so parts split the extractor's batches nowhere
PART_IMAGES = 8192


def features_cache_dir() -> Path:
    return cache_root() / FEATURES_SUBDIR


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def images_sha1(images: np.ndarray) -> str:
    """sha1 of the pixels, shape and dtype: the same name may hold other images (a re-decode)."""
    arr = np.ascontiguousarray(images)
    h = hashlib.sha1(f"{arr.dtype}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def cache_paths(key: dict) -> tuple[Path, Path]:
    """(features .npy, key .json) for a key; the readable prefix is only for people listing files."""
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{key['dataset']}-{key['split']}")[:60]
    stem = features_cache_dir() / f"{prefix}-{key_digest(key)[:20]}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _load(npy: Path, meta_path: Path, expected: dict) -> np.ndarray | None:
    """The cached features if both files are there and match, else None (with a warning if damaged)."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if any(meta.get(k) != v for k, v in expected.items()):
            raise ValueError("its key or images differ from the ones asked for")
        feats = np.load(npy, allow_pickle=False)
        if list(feats.shape) != meta.get("shape") or feats.dtype != np.float32:
            raise ValueError(f"shape {feats.shape} {feats.dtype} is not the recorded {meta.get('shape')} float32")
        return feats
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        warnings.warn(f"feature cache {npy.name} not used, recomputing: {exc}", stacklevel=3)
        return None


def cache_key(extractor, images: np.ndarray, dataset: str, split: str) -> dict:
    """What names a cache entry: the images (by dataset, split and per-image shape) and the extractor."""
    return {"dataset": dataset, "split": split, "image_shape": list(images.shape[1:]), **extractor.key()}


def cached_features(extractor, images: np.ndarray, dataset: str, split: str,
                    progress: bool | None = None) -> np.ndarray:
    """Features of a dataset split's uint8 images, from the cache or computed and cached.

    `extractor`: a FeatureExtractor (anything with `key()` and `__call__(images, progress=)`).
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError("cached_features takes a dataset's uint8 image array")
    key = cache_key(extractor, images, dataset, split)
    npy, meta_path = cache_paths(key)
    expected = {"key": key, "n_images": len(images), "images_sha1": images_sha1(images)}
    feats = _load(npy, meta_path, expected)
    if feats is None:
        written = lambda: _load(npy, meta_path, expected) if npy.is_file() else None  # noqa: E731
        feats = _extract_in_parts(extractor, images, npy.with_suffix(".parts"), expected, progress, written)
        if written() is None:  # (another process sharing the parts may have written it first)
            atomic_write_bytes(npy, _npy_bytes(feats))
            atomic_write_json(meta_path, {**expected, "shape": list(feats.shape)})  # last: it vouches for the .npy
        shutil.rmtree(npy.with_suffix(".parts"), ignore_errors=True)
    return feats


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _extract_in_parts(extractor, images: np.ndarray, parts: Path, expected: dict, progress: bool | None,
                      written) -> np.ndarray:
    """The features of `images`, `PART_IMAGES` at a time, each part kept in `parts/` once computed
    and read back from there by a later call with the same `expected` (a resumed run), or by
    another process extracting the same images (module docstring). `written()`: the whole entry,
    if another process has finished it meanwhile (then its parts are gone)."""
    stamp = parts / "key.json"
    with file_lock(parts.with_suffix(".parts-lock")):  # (beside the folder: it outlives the folder)
        try:
            same = json.loads(stamp.read_text()) == expected
        except (OSError, ValueError):
            same = False
        if not same:  # other images or another key: nothing there may be used
            shutil.rmtree(parts, ignore_errors=True)
            atomic_write_json(stamp, expected)
    spans = [(i, images[start:start + PART_IMAGES]) for i, start in enumerate(range(0, len(images), PART_IMAGES))]
    got: dict[int, np.ndarray] = {}
    for wait, order in ((False, spans[::-1]), (True, spans)):  # free parts first; then wait for the rest
        for i, chunk in order:
            if i in got:
                continue
            if (whole := written()) is not None:
                return whole
            path = parts / f"{i:05d}.npy"
            try:
                status, feats = run_once(path.with_suffix(".lock"), lambda: _load_part(path, len(chunk)),
                                         lambda: None if written() is not None else  # finished meanwhile
                                         _extract_part(extractor, chunk, path, progress), wait=wait)
            except FileNotFoundError:  # the parts were removed: the entry was written meanwhile
                status, feats = BUSY, None
            if status != BUSY and feats is not None:
                got[i] = feats
            elif (whole := written()) is not None:
                return whole
    return np.concatenate([got[i] for i, _ in spans])


def _extract_part(extractor, chunk: np.ndarray, path: Path, progress: bool | None) -> np.ndarray:
    feats = np.ascontiguousarray(extractor(chunk, progress=progress), dtype=np.float32)
    if len(feats) != len(chunk):
        raise RuntimeError(f"extractor returned {len(feats)} rows for {len(chunk)} images")
    atomic_write_bytes(path, _npy_bytes(feats))
    return feats


def _load_part(path: Path, rows: int) -> np.ndarray | None:
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # absent, or cut short by a kill: computed again
        return None
    return feats if feats.ndim == 2 and len(feats) == rows and feats.dtype == np.float32 else None
