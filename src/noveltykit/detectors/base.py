"""The contract every detector honours (PyOD / scikit-learn style).

    fit(X, X_val=None, y=None)  learn what is normal from normal images only (`y`: their class
                            labels, for detectors with `uses_labels`; the others ignore it)
    decision_function(X)    novelty scores, higher = more novel
    predict(X)              0 normal / 1 novel, by `threshold_`
    anomaly_map(X)          where the novelty is: (N, H, W) maps at the images' size, higher = more
                            novel, for detectors with `produces_maps` (else MapsNotSupported)
    scoring_module()        the score as one traceable torch module, float32 images (N, C, H, W)
                            in [-1, 1] -> (N,) scores equal to decision_function's, for detectors
                            with `exportable` (ONNX export, `apply.export`; else ExportNotSupported)
    get_params() / set_params(**p)  the constructor arguments (scikit-learn's contract: `clone`,
                            `GridSearchCV` and `Pipeline` take every detector)
    save(dir) / load(dir)   safetensors + JSON, no pickle

`threshold_` is the `threshold_quantile` quantile of scores on a normal-only validation set:
`X_val` when given, else a seeded `validation_fraction` of X held out from fitting. Test labels
never reach a detector. A map detector's `pixel_threshold_` is the same quantile of the largest
value of each normal validation image's anomaly map: a normal image like them shows any pixel
above it as often as its score is above `threshold_`.

How a fit runs (checkpoints, device, progress, caches, diagnostics) is not a parameter: it comes
through `configure(RunContext(...))` and is never saved.

Subclasses implement `_fit(x, x_val, y)`, `_score(x)` (float tensors in [-1, 1]) and, for saving,
`_state()` / `_load_state(tensors, info)`; everything about input checking lives here, once.
Map detectors also write `_map(x)`, the raw scores on their patch grid; upsampling and smoothing
live here (`maps.full_size`), once.
`fit_report()` and `companions()` tell a benchmark what else a fit produced (a training history,
a teacher), so the runner needs no knowledge of any family.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import save as save_tensors

from .. import __version__
from ..data.images import ImageDataset, to_float
from ..data.imagespec import ImageSpec
from ..data.protocols import validation_split
from ..fileio import atomic_dir, check_replaceable
from ..versions import package_versions
from .card import model_card
from .context import RunContext
from .maps import full_size, map_maxima, maps_not_supported
from .thresholds import false_alarm_rate, parse_threshold, quantile_threshold, too_few_above

# A saved model: these three files and nothing else. SCHEMA_VERSION counts layouts of config.json;
# `load` reads every version up to it (`schemas` says what each older one lacked).
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "weights.safetensors", "README.md"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
MODEL_FORMAT, SCHEMA_VERSION = "noveltykit-detector", 4

FLOAT_RANGE_SLACK = 1e-3  # float images may exceed [-1, 1] by rounding error only


def as_image_tensor(X: Any, *, what: str = "X", expect: tuple[int, ...] | None = None,
                    keep_uint8: bool = False) -> torch.Tensor:
    """Check a batch of images and return it as float32 in [-1, 1], shape (N, C, H, W).

    Accepts numpy arrays or torch tensors, uint8 in [0, 255] or float already scaled to [-1, 1].
    `expect` = (C, H, W) of the fitted model. Every problem is a ValueError that names it.
    `keep_uint8`: uint8 images come back as a uint8 tensor, for a detector that scales them itself
    chunk by chunk (a large set as float32 would be 4x its size at once).
    """
    if isinstance(X, ImageDataset):
        raise ValueError(f"{what}: pass an array of images, e.g. dataset.train_x, not the whole dataset")
    if isinstance(X, torch.Tensor):
        dtype_name = str(X.dtype).replace("torch.", "")
        arr = X.detach().cpu()
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{what}: cannot read as an image array ({exc})") from None
        dtype_name = str(arr.dtype)
    if arr.ndim != 4:
        hint = " (add a channel axis: X[:, None])" if arr.ndim == 3 else ""
        raise ValueError(f"{what}: expected images of shape (N, C, H, W), got rank {arr.ndim} "
                         f"shape {tuple(arr.shape)}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what}: empty array, no images")
    if dtype_name != "uint8" and not dtype_name.startswith(("float", "bfloat")):
        raise ValueError(f"{what}: dtype {dtype_name} not supported; use uint8 in [0, 255] "
                         "or float scaled to [-1, 1]")
    if isinstance(arr, np.ndarray) and not arr.flags.writeable:
        arr = arr.copy()  # torch warns on read-only buffers
    x = torch.as_tensor(arr) if keep_uint8 and dtype_name == "uint8" else to_float(arr)
    if expect is not None and tuple(x.shape[1:]) != tuple(expect):
        c, h, w = expect
        if x.shape[1] != c:
            raise ValueError(f"{what}: images have {x.shape[1]} channels but the model was fitted "
                             f"on {c}-channel images")
        raise ValueError(f"{what}: images are {x.shape[2]}x{x.shape[3]} but the model was fitted "
                         f"on {h}x{w} images")
    if dtype_name != "uint8":
        if not torch.isfinite(x).all():
            raise ValueError(f"{what}: contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - FLOAT_RANGE_SLACK or hi > 1 + FLOAT_RANGE_SLACK:
            raise ValueError(f"{what}: float images must be scaled to [-1, 1], found values in "
                             f"[{lo:.3g}, {hi:.3g}]; pass uint8 for raw pixels")
    return x


def check_labels(y, n: int) -> np.ndarray | None:
    """Class labels of the n training images as int64 (N,), or None; a ValueError names a mismatch."""
    if y is None:
        return None
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"y: expected one class label per training image ({n}), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"y: class labels must be integers, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, held-out indices): the seeded split `fit(X)` uses when no X_val is given, by
    the benchmarks' rule (`data.protocols.validation_split`, stream 0)."""
    fit_idx, val_idx = validation_split(np.arange(n), seed, fraction)
    return torch.from_numpy(fit_idx), torch.from_numpy(val_idx)


class NotFittedError(RuntimeError):
    pass


class ExportNotSupported(ValueError):
    """`scoring_module` of a detector (or of its settings) whose score has no single graph."""


def export_not_supported(name: str, why: str) -> ExportNotSupported:
    return ExportNotSupported(f"{name}: cannot be exported to ONNX: {why}")


class Detector:
    """Base class; see the module docstring for the contract. A scikit-learn estimator:
    `get_params(deep)`, `set_params`, `sklearn.base.clone`, tags (see "scikit-learn" below),
    without importing scikit-learn until one of its tools asks."""

    name: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False  # False: `fit` ignores `y` (the class docstring says so)
    # What a fit asks of the run beyond images, by RunContext field: e.g. "teacher_cache" (a folder
    # where the teachers it trains are kept and shared). A runner provides what its detectors declare.
    run_needs: ClassVar[frozenset[str]] = frozenset()
    # The score has a gradient w.r.t. the image (`differentiable_score`): adversarial probes need it.
    differentiable: ClassVar[bool] = False
    # A classifier of the normal classes (`class_log_probabilities`): probes may attack its class.
    classifies: ClassVar[bool] = False
    # What `noveltykit detectors` says of it: one line, what it is ("pixels: distance to the k
    # nearest normal images"); whether a fit trains a network for epochs; the optional extras
    # (pyproject's [project.optional-dependencies]) it cannot run without, e.g. ("pretrained",).
    summary: ClassVar[str] = ""
    trains_network: ClassVar[bool] = False
    extras: ClassVar[tuple[str, ...]] = ()
    # `_fit` and `_score` take uint8 images as they come (else float32 in [-1, 1]): for detectors
    # that scale them chunk by chunk themselves, so a large image set is never float32 at once.
    reads_uint8: ClassVar[bool] = False
    # Gives anomaly maps (`anomaly_map`, from the subclass's `_map`); such a detector has a
    # `map_sigma` parameter, the pixels of the Gaussian that smooths them (0 = none).
    produces_maps: ClassVar[bool] = False
    # Its score is one graph (`scoring_module`): `noveltykit export` writes it to ONNX. A detector
    # may still refuse some settings (ExportNotSupported says which and why).
    exportable: ClassVar[bool] = False

    def __init__(self, threshold_quantile: float = 0.95, validation_fraction: float = 0.1,
                 random_state: int = 0):
        if not 0.0 < threshold_quantile <= 1.0:
            raise ValueError(f"threshold_quantile must be in (0, 1], got {threshold_quantile}")
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
        self.threshold_quantile = threshold_quantile
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self._context = RunContext()  # private: not a parameter, so `clone` gives a fresh one

    def preferred_image_size(self) -> int | None:
        """The side this detector reads images at best (e.g. a feature extractor's own size), for
        loaders that may choose; None: any size (the papers' 32 by default)."""
        return None

    def configure(self, context: RunContext) -> "Detector":
        """Set how the next fit runs (see `RunContext`); returns the detector."""
        if not isinstance(context, RunContext):
            raise TypeError(f"configure takes a RunContext, got {type(context).__name__}")
        self._context = context
        return self

    @property
    def context(self) -> RunContext:
        """How the next fit runs (set by `configure`); the default `RunContext()` until then."""
        return self._context

    # --- what subclasses write -------------------------------------------------------------
    def _fit(self, x: torch.Tensor, x_val: torch.Tensor, y: np.ndarray | None) -> None:
        raise NotImplementedError

    def _threshold(self, val_scores: np.ndarray) -> float:
        """The fitted threshold: the `threshold_quantile` quantile of the validation scores."""
        return quantile_threshold(val_scores, self.threshold_quantile)

    def _threshold_rule(self) -> dict:
        """How `_threshold` set it, for the saved model and its card."""
        return {"quantile": self.threshold_quantile, "of": "normal validation scores"}

    def _after_fit(self, x: torch.Tensor, x_val: torch.Tensor) -> None:
        """Called once the threshold is set (e.g. to share the fitted model through a cache)."""

    def fit_report(self) -> dict:
        """JSON-able facts of the last fit for a results record (e.g. training history)."""
        return {}

    def fit_resumed(self) -> bool:
        """Whether the last fit went on from an earlier process's checkpoint (its seconds then
        cover only the rest). A trained detector's history says so; an ensemble asks the members
        it fitted itself (not those the fit cache gave)."""
        return False

    def companions(self) -> dict[str, "Detector"]:
        """Other fitted detectors a fit produced, by role (e.g. a distilled student's teacher)."""
        return {}

    def _score(self, x: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, h, w) raw novelty scores on the detector's patch grid, higher = more novel (map
        detectors: `produces_maps`)."""
        raise maps_not_supported(self.name or type(self).__name__)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) novelty scores of float images in [-1, 1] that autograd can differentiate w.r.t.
        `x`, on x's device (detectors with `differentiable`)."""
        raise ValueError(f"{self.name or type(self).__name__}: its score has no gradient w.r.t. the image")

    def scoring_module(self) -> torch.nn.Module:
        """The fitted score as one torch module for tracing (ONNX export): float32 images
        (N, *input_shape_) in [-1, 1] -> (N,) scores, equal to `decision_function`'s up to float
        rounding; the batch may be any size and nothing in it may depend on it (detectors with
        `exportable`; an ExportNotSupported, a ValueError, says why not otherwise)."""
        raise export_not_supported(self.name or type(self).__name__, "its score is not written as one graph")

    def class_log_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) log-probabilities of the K normal classes, differentiable w.r.t. `x`, on x's
        device (detectors with `classifies`)."""
        raise ValueError(f"{self.name or type(self).__name__}: has no classifier of the normal classes")

    def _state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        raise NotImplementedError

    def _info(self) -> dict:
        """JSON-able facts about the fitted model saved beside the weights (e.g. training history)."""
        return {}

    # --- the contract --------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """Constructor arguments of this class and its bases (subclasses pass `**base` up)."""
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            if issubclass(klass, Detector) and "__init__" in vars(klass):
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                        if p.name not in names:
                            names.append(p.name)
        return names

    # --- scikit-learn -----------------------------------------------------------------------------
    # Every detector is a scikit-learn estimator: `clone`, `GridSearchCV`, `Pipeline` take it (with
    # image-shaped input, e.g. a FunctionTransformer in front that reshapes rows into images). What
    # differs from scikit-learn's own outlier detectors: `predict` gives 0 normal / 1 novel (not
    # +1 / -1), `decision_function` is higher = more novel, and `fit`'s second positional argument
    # is `X_val` (so a tool that passes `y` positionally must not pass one: labels go by keyword,
    # `fit(X, y=labels)`). `clone` builds a new detector from `get_params()`: unfitted, and with the
    # default `RunContext` (the run's settings are not parameters; `configure` the clone again).
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """scikit-learn's name for `_param_names` (its own reads one `__init__` and misses `**base`)."""
        return cls._param_names()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, in `_param_names()` order: what `config.json` and a results
        record save. `deep` changes nothing: no parameter is itself an estimator."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> "Detector":
        """Change parameters as the constructor would take them: it checks them (a bad value
        raises ValueError and leaves the detector as it was) and the new values are those it
        stores. Returns the detector. A fitted detector keeps what it learnt, as in scikit-learn:
        refit it."""
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"{self.name or type(self).__name__}: unknown parameter(s) {unknown}; valid: {valid}")
        current = self.get_params()
        try:
            fresh = type(self)(**{**current, **params})
        except OverflowError as exc:  # int(inf) and the like: a bad value like any other
            raise ValueError(f"{self.name or type(self).__name__}: {exc}") from None
        for key in params:
            # the caller's own object where the constructor keeps its value (scikit-learn checks `is`)
            setattr(self, key, params[key] if _same_value(params[key], getattr(fresh, key)) else getattr(fresh, key))
        return self

    def __sklearn_clone__(self) -> "Detector":
        """A new, unfitted detector with equal parameters and the default `RunContext`. Unlike
        scikit-learn's default clone this accepts a constructor that canonicalises a value (e.g.
        `stages`, `structure`) as long as the clone's parameters equal the original's."""
        params = self.get_params()
        new = type(self)(**params)
        changed = [k for k, v in new.get_params().items() if not _same_value(v, params[k])]
        if changed:
            raise RuntimeError(f"cannot clone {self!r}: its constructor changes parameter(s) {changed}")
        return new

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "threshold_")

    def __sklearn_tags__(self):
        """An outlier detector on images (N, C, H, W): not 2-D tabular data, so scikit-learn's
        common checks on made-up tables do not run (tests/test_conformance.py runs those that apply)."""
        from sklearn.utils import InputTags, Tags, TargetTags  # only scikit-learn's own tools ask
        # scikit-learn has no tag for 4-D images: none of its array kinds is set
        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=bool(self.uses_labels)),
                    requires_fit=True, input_tags=InputTags(two_d_array=False, allow_nan=False))

    def fit(self, X, X_val=None, y=None) -> "Detector":
        x = as_image_tensor(X, what="X", keep_uint8=self.reads_uint8)
        labels = check_labels(y, len(x))
        if X_val is None:
            if len(x) < 2:
                raise ValueError("X: need at least 2 images to hold some out for the threshold")
            fit_idx, val_idx = holdout_split(len(x), self.validation_fraction, self.random_state)
            x, x_val = x[fit_idx], x[val_idx]
            labels = None if labels is None else labels[fit_idx.numpy()]
        else:
            x_val = as_image_tensor(X_val, what="X_val", expect=tuple(x.shape[1:]), keep_uint8=self.reads_uint8)
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        self._fit(x, x_val, labels)
        val_scores = self._score(x_val)
        self.threshold_ = self._threshold(val_scores)
        self.threshold_from_ = self._threshold_rule()
        # kept with the model: a threshold can be set later as a quantile of them (`set_threshold`)
        self.validation_scores_ = np.sort(np.asarray(val_scores, np.float64))
        if self.produces_maps:  # the same quantile, of each normal validation map's largest pixel
            grid = self._grid(x_val)
            maxima = map_maxima(grid, tuple(x_val.shape[2:]), self.map_sigma)
            self.pixel_threshold_ = quantile_threshold(maxima, self.threshold_quantile)
            self.map_floor_ = float(grid.float().median())  # a typical normal patch: where overlays start
        if "quantile" in self.threshold_from_ and (warning := too_few_above(val_scores, self.threshold_)):
            warnings.warn(f"{self.name or type(self).__name__}: {warning}", stacklevel=2)
        self.training_ = {"n_train": len(x), "n_validation": len(x_val),
                          "validation": "X_val as given" if X_val is not None else
                          f"a seeded {self.validation_fraction:g} of X (random_state {self.random_state})",
                          "train_fingerprint": fingerprint(x),
                          "validation_scores": score_summary(val_scores, self.threshold_)}
        self._after_fit(x, x_val)
        return self

    def threshold_for(self, threshold: str | float) -> float:
        """A threshold given as a score (`15`) or as a quantile of the normal validation scores
        (`"q0.99"`), as a score; the model is not changed (see `set_threshold`)."""
        self._check_fitted()
        kind, value = parse_threshold(threshold)
        if kind == "score":
            return value
        if getattr(self, "validation_scores_", None) is None:
            raise ValueError(f"{self.name}: this model keeps no validation scores (saved before noveltykit "
                             "kept them): give the threshold as a score, or fit it again")
        return quantile_threshold(self.validation_scores_, value)

    def expected_false_alarms(self) -> dict:
        """The share of the normal validation scores above the threshold (the false-alarm rate to
        expect on normal images like them) and its 95% interval from their number:
        {"rate", "low", "high", "above", "n", "confidence"} (`thresholds.false_alarm_rate`)."""
        self._check_fitted()
        if getattr(self, "validation_scores_", None) is None:
            raise ValueError(f"{self.name}: this model keeps no validation scores (saved before noveltykit kept them)")
        return false_alarm_rate(self.validation_scores_, self.threshold_)

    def set_threshold(self, threshold: str | float, *, by: str = "") -> "Detector":
        """Change the threshold `predict` uses: a score or `"q0.99"` (see `threshold_for`). The
        model records what it was set from, by whom (`by`) and when, and the one before."""
        new = self.threshold_for(threshold)
        kind, value = parse_threshold(threshold)
        previous = {k: v for k, v in getattr(self, "threshold_from_", {}).items() if k != "previous"}
        self.threshold_from_ = {**({"quantile": value, "of": "normal validation scores"} if kind == "quantile"
                                   else {"score": value, "of": "given by hand"}),
                                "set_by": by or "set_threshold", "at": datetime.now(timezone.utc).isoformat(
                                    timespec="seconds"), "previous": {"threshold": self.threshold_, **previous}}
        self.threshold_ = new
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(X) first")

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        x = as_image_tensor(X, expect=self.input_shape_, keep_uint8=self.reads_uint8)
        scores = np.asarray(self._score(x), np.float64)
        return scores

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def anomaly_map(self, X) -> np.ndarray:
        """Where the novelty is: float32 (N, H, W) at the images' own size, higher = more novel.
        The patch grid's raw scores (`_map`) upsampled bilinearly and smoothed by a Gaussian of
        `map_sigma` pixels (`maps.full_size`); deterministic. A pixel above `pixel_threshold_`
        is flagged: the `threshold_quantile` quantile of the largest pixel of each normal
        validation image's map, so a normal image like them shows a flagged pixel as often as its
        score is flagged. MapsNotSupported (a ValueError) for a detector without maps."""
        if not self.produces_maps:
            raise maps_not_supported(self.name or type(self).__name__)
        self._check_fitted()
        x = as_image_tensor(X, expect=self.input_shape_, keep_uint8=self.reads_uint8)
        return full_size(self._grid(x), tuple(x.shape[2:]), self.map_sigma)

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        """`_map(x)`, checked: one (h, w) grid of finite scores an image."""
        grid = self._map(x)
        if grid.ndim != 3 or len(grid) != len(x):
            raise RuntimeError(f"{self.name}: _map gave shape {tuple(grid.shape)} for {len(x)} images; "
                               "expected (N, h, w)")
        return grid

    def save(self, directory: str | Path, *, preprocessing: ImageSpec | None = None, data: dict | None = None
             ) -> Path:
        """Write `config.json` (name, params, threshold and where it came from, the preprocessing
        scoring needs, training facts, versions, weights' sha256), `weights.safetensors` and a
        `README.md` model card. `preprocessing`: the images' spec (default: from the input shape,
        with the loaders' rules); `data`: what the training images were (for the card).

        The folder is written beside its place and swapped in whole: a killed save leaves the old
        model or the new one. A folder holding anything else is refused, never replaced.
        """
        self._check_fitted()
        directory = Path(directory)
        check_replaceable(directory, MODEL_FILES, "a saved model")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state().items()}
        weights = save_tensors(tensors)
        spec = preprocessing or getattr(self, "preprocessing_", None) or ImageSpec.of_shape(self.input_shape_)
        if (spec.channels, spec.size, spec.size) != tuple(self.input_shape_):
            raise ValueError(f"preprocessing {spec} does not give this model's input shape {self.input_shape_}")
        config = {"format": MODEL_FORMAT, "schema": SCHEMA_VERSION, "detector": self.name,
                  "params": self.get_params(), "threshold_": self.threshold_,
                  **({"pixel_threshold_": self.pixel_threshold_, "map_floor_": getattr(self, "map_floor_", None)}
                     if getattr(self, "pixel_threshold_", None) is not None else {}),
                  "input_shape_": list(self.input_shape_), "preprocessing": spec.to_dict(),
                  "threshold_from": getattr(self, "threshold_from_", None) or self._threshold_rule(),
                  **({"validation_scores": self.validation_scores_.tolist()}
                     if getattr(self, "validation_scores_", None) is not None else {}),
                  "training": {**getattr(self, "training_", {}), **({"data": data} if data else {})},
                  "fitted": self._info(), "weights_sha256": hashlib.sha256(weights).hexdigest(),
                  "noveltykit_version": __version__, "versions": package_versions()}
        with atomic_dir(directory) as tmp:
            (tmp / WEIGHTS_FILE).write_bytes(weights)
            (tmp / CARD_FILE).write_text(model_card(config))
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def fingerprint(x: torch.Tensor) -> str:
    """A short hash of the training images: tells whether two models saw the same data."""
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def score_summary(scores: np.ndarray, threshold: float) -> dict:
    """The validation scores in a few numbers, and the share above the threshold (the validation
    false-alarm rate, about 1 - threshold_quantile by construction)."""
    q = np.quantile(scores, [0.0, 0.5, 0.95, 1.0])
    return {"min": float(q[0]), "median": float(q[1]), "q95": float(q[2]), "max": float(q[3]),
            "above_threshold": float((scores > threshold).mean())}


def _same_value(a, b) -> bool:
    """Whether a parameter kept its value: the same object, or an equal one of the same type."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # e.g. arrays, whose == is elementwise
        return False
