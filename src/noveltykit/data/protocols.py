"""One-class evaluation protocols: which images train, validate and test a detector.

Both protocols carve a normal-only validation split out of the training images. It is the only
data that model selection, early stopping or a threshold may look at; test labels are for metrics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import ImageDataset

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

    normal_idx = np.flatnonzero(train_is_normal)
    if len(normal_idx) < 2:
        raise ValueError(f"{ds.name}: class {cls} leaves {len(normal_idx)} normal training images")
    # Seeded per (seed, class) so each cell's validation split is reproducible on its own.
    rng = np.random.default_rng([seed, cls])
    shuffled = rng.permutation(normal_idx)
    n_val = int(round(val_fraction * len(shuffled)))
    if val_fraction > 0:
        n_val = min(max(n_val, 1), len(shuffled) - 1)
    val_idx, train_idx = np.sort(shuffled[:n_val]), np.sort(shuffled[n_val:])

    test_idx = np.arange(len(ds.test_y))
    if test_is_novel.all() or not test_is_novel.any():
        raise ValueError(f"{ds.name}: the test split for class {cls} under {protocol} has only one kind "
                         "of image (normal or novel); AUROC is undefined")
    return Split(protocol, cls, seed, train_idx, val_idx, test_idx, test_is_novel.copy())
