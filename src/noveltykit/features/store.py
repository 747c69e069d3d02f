"""Features by image content: a detector handed images it has seen before (a benchmark's train
and test splits) takes their features from here instead of running the network again.

An image is known by the sha1 of its uint8 bytes. Detectors receive float images in [-1, 1];
those that are exactly a uint8 image's scaling are looked up, any other image is extracted.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..data.images import ImageDataset, to_float
from .feature_cache import cached_features


def image_digests(images: np.ndarray) -> list[bytes]:
    """sha1 of each uint8 image's bytes."""
    return [hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest() for img in images]


def exact_uint8(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, mask of the rows whose [-1, 1] scaling is exactly x): the others are floats
    that no uint8 image gives, and must not borrow a rounded neighbour's features."""
    if x.dtype == torch.uint8:
        return x.numpy(), np.ones(len(x), dtype=bool)
    q = ((x + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    exact = (to_float(q) == x).flatten(1).all(1)
    return q.numpy(), exact.numpy()


class FeatureStore:
    """image sha1 -> feature row, for the features of one extractor `key`."""

    def __init__(self, key: dict):
        self.key = key
        self._rows: dict[bytes, tuple[int, int]] = {}  # digest -> (block, row)
        self._blocks: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, images: np.ndarray, features: np.ndarray) -> None:
        if len(images) != len(features):
            raise ValueError(f"{len(images)} images but {len(features)} feature rows")
        block = len(self._blocks)
        self._blocks.append(np.asarray(features, dtype=np.float32))
        for row, digest in enumerate(image_digests(images)):
            self._rows.setdefault(digest, (block, row))

    def features(self, x: torch.Tensor, extractor) -> np.ndarray:
        """Features of images x (uint8, or float in [-1, 1]): stored rows where known, `extractor` for the rest."""
        if extractor.key() != self.key:
            raise ValueError("this feature store holds features of another extractor "
                             f"({self.key}), not of {extractor.key()}")
        images, exact = exact_uint8(x)
        found = [self._rows.get(d) if ok else None for d, ok in zip(image_digests(images), exact)]
        out = np.empty((len(x), extractor.dim), dtype=np.float32)
        missing = np.array([f is None for f in found])
        for i, hit in enumerate(found):
            if hit is not None:
                out[i] = self._blocks[hit[0]][hit[1]]
        if missing.any():
            out[missing] = extractor(x[torch.from_numpy(missing)])
        return out


# The last store built: consecutive cells of one benchmark (same dataset, same detector
# settings) share it instead of reading the cache and hashing every image again.
_last: list[tuple[np.ndarray, np.ndarray, str, dict, FeatureStore]] = []


def dataset_feature_store(ds: ImageDataset, extractor, progress: bool | None = None) -> FeatureStore:
    """A store with the features of the dataset's train and test splits, from the disk cache
    (extracted and cached the first time)."""
    key = extractor.key()
    for train, test, name, known_key, store in _last:
        if train is ds.train_x and test is ds.test_x and name == ds.name and known_key == key:
            return store
    store = FeatureStore(key)
    for split, images in (("train", ds.train_x), ("test", ds.test_x)):
        store.add(images, cached_features(extractor, images, ds.name, split, progress=progress))
    _last[:] = [(ds.train_x, ds.test_x, ds.name, key, store)]
    return store
