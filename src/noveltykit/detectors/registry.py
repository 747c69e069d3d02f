"""Detectors by name: `make("knn", k=5)`, and `load(dir)` for a saved one."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from .base import Detector

_REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: file a detector under its `name`."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name` to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"detector name {cls.name!r} is taken by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def make(name: str, **params) -> Detector:
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available())}")
    cls = _REGISTRY[name]
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {sorted(unknown)}; "
                         f"valid: {cls._param_names()}")
    return cls(**params)


def load(directory: str | Path) -> Detector:
    """Rebuild a detector written by `Detector.save` (JSON + safetensors, nothing executable)."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json; is this a saved noveltykit detector?")
    config = json.loads(config_path.read_text())
    det = make(config["detector"], **config["params"])
    det.threshold_ = float(config["threshold_"])
    det.input_shape_ = tuple(config["input_shape_"])
    det._load_state(load_file(str(directory / "weights.safetensors")), config.get("fitted", {}))
    return det
