"""`noveltykit set-threshold`: change the threshold of a saved model folder or an exported ONNX file.

A model folder takes a score (`15`) or a quantile of its normal validation scores (`q0.99`); it
is saved again whole (the folder is swapped in atomically, the weights unchanged), and its
config.json and model card record what the threshold was set from, by whom, when, and the one
before. An ONNX file holds no validation scores: it takes a score.
"""
from __future__ import annotations

import getpass
from pathlib import Path

from ..detectors import load
from ..detectors.thresholds import parse_threshold
from .export import read_metadata, set_threshold


def set_threshold_of(path: str | Path, threshold: str | float, *, by: str = "") -> tuple[float, float]:
    """Set the threshold of the model folder or ONNX file at `path`; returns (before, after).
    `by`: who set it (default: this user, through noveltykit set-threshold)."""
    path = Path(path)
    by = by or f"{getpass.getuser()} (noveltykit set-threshold)"
    if path.is_dir():
        detector = load(path)
        before = detector.threshold_
        detector.set_threshold(threshold, by=by)
        detector.save(path)
        return before, detector.threshold_
    if not path.is_file():
        raise ValueError(f"{path}: no such model folder or ONNX file")
    kind, value = parse_threshold(threshold)
    if kind == "quantile":
        raise ValueError(f"{path}: an ONNX file holds no validation scores, so {threshold} cannot be computed; "
                         "give a score, or set the quantile on the model folder and export it again")
    before = read_metadata(path).get("threshold")
    set_threshold(path, value)
    return before, read_metadata(path)["threshold"]
