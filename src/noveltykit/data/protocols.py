"""One-class evaluation protocols: which images train, validate and test a detector.

Both protocols carve a normal-only validation split out of the training images. It is the only
data that model selection, early stopping or a threshold may look at; test labels are for metrics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import ImageDataset, to_float

PROTOCOLS = ("one-vs-rest", "leave-one-out")


@dataclass
class Split:
    """Indices into a dataset for one (protocol, class, seed) cell, plus the test's novelty labels."""

    protocol: str
    target_class: int  # the normal class (one-vs-rest) or the held-out novel class (leave-one-out)
    seed: int
    train_idx: np.ndarray  # into dataset.train_x, normal only
    val_idx: np.ndarray  # into dataset.train_x, normal only, disjoint from train_idx
    test_idx: np.ndarray  # into dataset.test_x
    test_is_novel: np.ndarray  # bool, aligned with test_idx

    def arrays(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train images, validation images, test images, test novelty labels)."""
        return (ds.train_x[self.train_idx], ds.train_x[self.val_idx],
                ds.test_x[self.test_idx], self.test_is_novel)


def make_split(ds: ImageDataset, protocol: str, target_class: int | str, seed: int = 0,
               val_fraction: float = 0.1) -> Split:
    """Build the split of one benchmark cell.

    one-vs-rest: `target_class` is normal; train on its training images, test on the whole test
    split with every other class novel (the P-KDGAN paper's Table IV setting).
    leave-one-out: `target_class` is novel; train on all other classes, test on the whole test
    split (the tech report's held-out-class setting).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cls = ds.class_index(target_class)
    train_is_normal = (ds.train_y == cls) if protocol == "one-vs-rest" else (ds.train_y != cls)
    test_is_novel = (ds.test_y != cls) if protocol == "one-vs-rest" else (ds.test_y == cls)

    train_idx, val_idx = _carve_validation(ds, np.flatnonzero(train_is_normal), cls, seed, val_fraction)

    test_idx = np.arange(len(ds.test_y))
    if test_is_novel.all() or not test_is_novel.any():
        raise ValueError(f"{ds.name}: the test split for class {cls} under {protocol} has only one kind "
                         "of image (normal or novel); AUROC is undefined")
    return Split(protocol, cls, seed, train_idx, val_idx, test_idx, test_is_novel.copy())


def _carve_validation(ds: ImageDataset, normal_idx: np.ndarray, cls: int, seed: int,
                      val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): a seeded share of the normal training images held out to validate."""
    if len(normal_idx) < 2:
        raise ValueError(f"{ds.name}: class {cls} leaves {len(normal_idx)} normal training images")
    return validation_split(normal_idx, seed, val_fraction, stream=cls)


def validation_split(indices: np.ndarray, seed: int, fraction: float, stream: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, validation indices), each sorted: a seeded `fraction` of `indices` held out.
    The one rule of every validation split: a benchmark cell's (stream = its class) and
    `Detector.fit`'s when no X_val is given (stream 0, the class of a folder's normal images), so
    `noveltykit fit` and `bench` on one folder and seed hold out the same images. At least one
    image on each side when fraction > 0."""
    # Seeded per (seed, stream) so each cell's validation split is reproducible on its own.
    shuffled = np.random.default_rng([seed, stream]).permutation(indices)
    n_val = int(round(fraction * len(shuffled)))
    if fraction > 0:
        n_val = min(max(n_val, 1), len(shuffled) - 1)
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val])


def dev_split(ds: ImageDataset, cls: int | str, seed: int, n_novel: int = 2000):
    """A development split for one-vs-rest class `cls`, from TRAINING images only.

    Returns (train images, validation images, dev images, dev labels) as float tensors (labels a
    numpy array, 1 = novel): train and validation are `make_split`'s one-vs-rest ones; the dev
    images are the validation images (label 0) then a seeded sample of up to `n_novel` training
    images of the other classes (label 1), never trained on in one-vs-rest. Choices made here
    leave the test tables honest: only `train_x` and `train_y` are read.
    """
    cls = ds.class_index(cls)
    # make_split's own one-vs-rest validation split (its default fraction), without its look at
    # the test labels
    train_idx, val_idx = _carve_validation(ds, np.flatnonzero(ds.train_y == cls), cls, seed, 0.1)
    others = np.flatnonzero(ds.train_y != cls)
    if len(others) == 0:
        raise ValueError(f"{ds.name}: a development split needs training images of other classes to stand "
                         f"for novelty, and there are none besides class {cls} (a folder dataset's training "
                         "images are all normal)")
    pick = np.random.default_rng([seed, cls, 7]).choice(others, size=min(n_novel, len(others)), replace=False)
    x_dev = np.concatenate([ds.train_x[val_idx], ds.train_x[pick]])
    y_dev = np.r_[np.zeros(len(val_idx)), np.ones(len(pick))]
    return to_float(ds.train_x[train_idx]), to_float(ds.train_x[val_idx]), to_float(x_dev), y_dev
