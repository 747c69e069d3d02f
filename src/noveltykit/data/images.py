"""The in-memory image container every dataset loader returns, and input checks for detectors.

Images stay uint8 (N, C, H, W) in memory; `to_float` scales a batch to [-1, 1] only when needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ImageDataset:
    """A labelled dataset with its standard train/test partition.

    `name` is the name results are reported under (e.g. ``cifar10-jpeg`` when the JPEG copy was
    used); `source` says where the bytes came from (a path, the cache, a package mirror).
    """

    name: str
    train_x: np.ndarray  # uint8 (N, C, 32, 32)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    source: str = ""
    info: dict = field(default_factory=dict)
    # the normal training images' own classes where train_y cannot say them (a folder dataset's
    # class subfolders under train/, named in info["train_classes"]); None: train_y says them
    train_groups: np.ndarray | None = None
    # where the novelty is, for pixel metrics (a folder dataset in MVTec AD's layout; None
    # elsewhere): uint8 (N_test, H, W) 0/1 ground-truth masks at the images' size, zero for normal
    # images and for novel ones whose mask is unknown; which masks are known (bool (N_test,)); and
    # each test image's kind, e.g. "good", "crack" (str (N_test,)). Read masks by `pixel_masks`.
    test_masks: np.ndarray | None = None
    test_has_mask: np.ndarray | None = None
    test_kinds: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    def normal_labels(self, train_idx: np.ndarray) -> np.ndarray:
        """The class labels of these (normal) training images, for detectors that use labels."""
        return (self.train_y if self.train_groups is None else self.train_groups)[train_idx]

    def pixel_masks(self, test_idx: np.ndarray | None = None) -> np.ndarray:
        """The ground-truth masks of these test images (all by default), uint8 (n, H, W) 0/1, for
        pixel metrics. A ValueError says why when there are none or one of them is unknown: a
        metric over the known ones alone would quietly leave a whole defect kind out."""
        idx = np.arange(len(self.test_y)) if test_idx is None else np.asarray(test_idx)
        if self.test_masks is None:
            raise ValueError(f"{self.name}: no ground-truth masks, so no pixel metrics (a folder dataset in "
                             "MVTec AD's layout has them as PATH/ground_truth/<defect>/<name>_mask.png)")
        unknown = ~self.test_has_mask[idx]
        if unknown.any():
            what = (f"of kind {', '.join(sorted(set(self.test_kinds[idx][unknown])))}"
                    if self.test_kinds is not None else f"({int(unknown.sum())})")
            raise ValueError(f"{self.name}: the test images {what} have no ground-truth masks, so no pixel "
                             "metrics")
        return self.test_masks[idx]

    def class_index(self, cls: int | str) -> int:
        """Accept a class as an index or a name."""
        if isinstance(cls, str) and not cls.lstrip("-").isdigit():
            if cls not in self.class_names:
                raise ValueError(f"unknown class {cls!r} for {self.name}; classes: {self.class_names}")
            return self.class_names.index(cls)
        idx = int(cls)
        if not 0 <= idx < len(self.class_names):
            raise ValueError(f"class {idx} out of range for {self.name} ({len(self.class_names)} classes)")
        return idx


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the paper's scaling); float input is returned as float32."""
    t = torch.as_tensor(images)
    if t.dtype == torch.uint8:
        return t.to(torch.float32).div_(127.5).sub_(1.0)
    return t.to(torch.float32)
