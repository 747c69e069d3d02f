"""One scored file as a row (path, score, threshold, is_novel, error, converted, map), and a file
read as a saved model's input: what `score` writes and the score page shows. `converted` says when
the image's channels were changed for the model: "grey->colour", "colour->grey", or empty; `map`
is the path of the file's overlay when `score --maps` wrote one, else empty."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.folder import load_image
from ..detectors import Detector

COLUMNS = ("path", "score", "threshold", "is_novel", "error", "converted", "map")  # new ones go last


@dataclass
class ScoreRow:
    path: str
    score: float | None
    threshold: float
    is_novel: bool | None
    error: str = ""
    converted: str = ""
    map: str = ""

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in COLUMNS}


def read_for(detector: Detector, path: Path) -> np.ndarray:
    """One file as the model's input: uint8 (C, size, size); ValueError naming the file if unusable."""
    return read_converted(detector, path)[0]


def read_converted(detector: Detector, path: Path) -> tuple[np.ndarray, str]:
    """`read_for`, and how the image's channels were changed for the model ("" when they were not)."""
    if not path.is_file():
        what = ("no such file" if not path.exists() else "is a folder, expected an image file" if path.is_dir()
                else "not a regular file, expected an image file")
        raise ValueError(f"{path}: {what}")
    spec = detector.preprocessing_
    chw = load_image(path, spec.size)
    return spec.conform(chw), spec.conversion(chw)
