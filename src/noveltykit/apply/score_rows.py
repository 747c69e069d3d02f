"""One scored file as a row (path, score, threshold, is_novel, error), and a file read as a saved
model's input: what `score` writes and the score page shows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.folder import load_image
from ..detectors import Detector

COLUMNS = ("path", "score", "threshold", "is_novel", "error")


@dataclass
class ScoreRow:
    path: str
    score: float | None
    threshold: float
    is_novel: bool | None
    error: str = ""

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in COLUMNS}


def read_for(detector: Detector, path: Path) -> np.ndarray:
    """One file as the model's input: uint8 (C, size, size); ValueError naming the file if unusable."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    spec = detector.preprocessing_
    return spec.conform(load_image(path, spec.size))
