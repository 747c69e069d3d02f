"""Detectors by name: `make("knn", k=5)`, and `load(dir)` for a saved one."""
from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import numpy as np
from safetensors.torch import load as load_tensors

from ..data.imagespec import ImageSpec
from ..features.weights import PretrainedWeightsMismatch
from .base import CONFIG_FILE, SCHEMA_VERSION, WEIGHTS_FILE, Detector
from .schemas import upgrade

_REGISTRY: dict[str, type[Detector]] = {}
# The built-in detectors and the family module that registers each. A family is imported when one
# of its detectors is asked for, not with the package: together they pull in seconds of imports
# (scikit-learn, the pretrained backbone), and scoring with a saved knn needs none of it.
# tests/test_detector_registry.py checks this table against what the family modules register.
FAMILIES = {
    "knn": "knn", "kde": "kde", "ocsvm": "ocsvm", "pca": "pca", "bayes-factor": "bayes_factor",
    "ae": "autoencoders", "conv-ae": "autoencoders", "dae": "autoencoders", "contractive-ae": "autoencoders",
    "vae": "vae", "deep-svdd": "deep_svdd", "selfsup": "selfsup", "certainty": "certainty",
    "ed-gan": "ede_gan", "edhat-gan": "ede_gan", "ede-gan": "ede_gan", "kdgan": "kdgan", "gan-disc": "gan_disc",
    "feat-knn": "pretrained", "feat-gauss": "pretrained", "feat-ocsvm": "pretrained", "feat-bayes": "pretrained",
    "feat-msc": "finetuned", "feat-panda": "finetuned", "patchcore": "patchcore", "padim": "padim",
    "ensemble": "ensemble",
}


def _import_family(name: str) -> None:
    if name not in _REGISTRY and name in FAMILIES:
        importlib.import_module(f"{__package__}.{FAMILIES[name]}")


def is_known(name: str) -> bool:
    """Whether `name` is a detector's, built in or registered, without importing any family."""
    return name in FAMILIES or name in _REGISTRY


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: file a detector under its `name`."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a `name` to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"detector name {cls.name!r} is taken by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """Every detector's name: the built-in ones (their families imported now) and any registered."""
    for name in FAMILIES:
        _import_family(name)
    return sorted(_REGISTRY)


def exportable_names() -> list[str]:
    """The registered detectors whose score exports to ONNX (`exportable`), sorted."""
    return [name for name in available() if _REGISTRY[name].exportable]


def default_params() -> dict[str, dict]:
    """Each registered detector's name -> the parameters `make(name)` gives it, sorted by name."""
    return {name: make(name).get_params() for name in available()}


def detector_class(name: str) -> type[Detector]:
    """The class registered under `name` (its contract's class attributes say what it needs)."""
    _import_family(name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def make(name: str, **params) -> Detector:
    cls = detector_class(name)
    unknown = set(params) - set(cls._param_names())
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {sorted(unknown)}; "
                         f"valid: {cls._param_names()}")
    return cls(**params)


class ModelFileError(ValueError):
    """A saved model that cannot be loaded; the message names the file and what is wrong with it."""


REQUIRED_KEYS = ("detector", "params", "threshold_", "input_shape_")


def read_config(directory: Path) -> dict:
    """A saved model's config.json, checked: JSON, every required key, a schema this version reads."""
    path = directory / CONFIG_FILE
    if directory.is_file():  # e.g. the model's own config.json
        hint = f" (the folder holding it, {directory.parent}?)" if directory.name == CONFIG_FILE else ""
        raise ModelFileError(f"{directory}: is a file, expected a model folder{hint}")
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: no such folder, expected a model folder")
    if not path.is_file():
        raise ModelFileError(f"{directory}: no {CONFIG_FILE}; is this a saved noveltykit detector?")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: expected a JSON object, found {type(config).__name__}")
    schema = config.get("schema", 1)
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        raise ModelFileError(f"{path}: schema {schema!r}; this noveltykit reads schemas 1 to {SCHEMA_VERSION} "
                             "(a newer noveltykit saved it?)")
    for key in REQUIRED_KEYS:
        if key not in config:
            raise ModelFileError(f"{path}: missing key {key!r}")
    return config


def load(directory: str | Path) -> Detector:
    """Rebuild a detector written by `Detector.save` (JSON + safetensors, nothing executable)."""
    directory = Path(directory)
    config = read_config(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    try:
        config = upgrade(config)  # an older save, in today's layout
        det = make(config["detector"], **config["params"])
        det.threshold_ = float(config["threshold_"])
        if det.produces_maps:  # None: saved before map detectors kept one
            pixel = config.get("pixel_threshold_")
            det.pixel_threshold_ = None if pixel is None else float(pixel)
            floor = config.get("map_floor_")
            det.map_floor_ = None if floor is None else float(floor)
        det.input_shape_ = tuple(int(s) for s in config["input_shape_"])
        det.preprocessing_ = ImageSpec.from_dict(config["preprocessing"])
        det.training_ = dict(config.get("training", {}))
        det.threshold_from_ = dict(config["threshold_from"])
        scores = config.get("validation_scores")  # saved since the threshold could be set as a quantile
        det.validation_scores_ = None if scores is None else np.asarray(scores, np.float64)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{config_path}: {exc}") from None
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: missing")
    data = weights_path.read_bytes()
    expected = config.get("weights_sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ModelFileError(f"{weights_path}: sha256 differs from the one in {CONFIG_FILE} (changed, "
                             "truncated, or from another save)")
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ModelFileError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    try:
        det._load_state(tensors, config.get("fitted", {}))
    except PretrainedWeightsMismatch:
        raise  # the model is fine; the installed backbone is another one (its own message says so)
    except KeyError as exc:
        raise ModelFileError(f"{weights_path}: missing tensor {exc.args[0]!r} of a {det.name} model") from None
    except (RuntimeError, ValueError) as exc:  # load_state_dict: wrong shapes or names
        raise ModelFileError(f"{weights_path}: does not fit a {det.name} model with these parameters "
                             f"({str(exc).splitlines()[0]})") from None
    return det
