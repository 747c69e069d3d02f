"""A student EDE-GAN distilled from a trained EDE-GAN teacher (P-KDGAN), as an ordinary detector.

`fit(X, X_val)` needs a teacher trained on the same normal images. It comes from `teacher_dir` (a
saved `ede-gan` detector, e.g. from `noveltykit bench --save-models`), or is trained here with
`teacher_preset` / `teacher_budget` and, when `teacher_cache` names a folder, kept there keyed by
its parameters and training images, so that several students of one class share one teacher.
The fitted detector is the student alone: it saves, loads and scores like `ede-gan` at its width.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import torch

from .. import __version__
from ..distill.kdgan import DistillConfig, parse_structure, train_distill
from ..fileio import file_lock, remove_tree_inside
from ..train.gan import TRAINING_CODE_VERSION
from .base import CONFIG_FILE, as_image_tensor
from .gan import EDEGANDetector, _GANDetector, fingerprint
from .registry import load, register



@register
class KDGANDetector(_GANDetector):
    """Parameters: `structure` (1-4 = KDGAN-n, p23 / p24 = P-KDGAN-II-23 / -24), `width` = the
    student's u, distillation weights w1, wx, w2, where the teacher comes from, and any GANConfig
    field for the student (its `epochs` is the length of each distillation step). The student's
    own `preset` is `student` (the teacher's `default` with a 10x higher learning rate)."""

    name, variant = "kdgan", "ede"

    def __init__(self, threshold_quantile: float = 0.95, validation_fraction: float = 0.1,
                 random_state: int = 0, structure: str = "p23", width: int = 2, w1: float = 1.0,
                 wx: float = 1.0, w2: float = 1.0, teacher_dir: str | None = None,
                 teacher_cache: str | None = None, teacher_preset: str = "default",
                 teacher_budget: str = "cpu", teacher_width: int = 64, preset: str = "student", **gan):
        super().__init__(threshold_quantile, validation_fraction, random_state, width=width,
                         preset=preset, **gan)
        self.structure = parse_structure(structure)
        self.w1, self.wx, self.w2 = float(w1), float(wx), float(w2)
        self.distill_config()  # validate the weights now
        self.teacher_dir, self.teacher_cache = teacher_dir, teacher_cache
        self.teacher_preset, self.teacher_budget = teacher_preset, teacher_budget
        self.teacher_width = int(teacher_width)
        self.teacher_ = None  # the teacher of the last fit (in memory only; not saved with the student)

    def distill_config(self) -> DistillConfig:
        return DistillConfig(self.structure, self.w1, self.wx, self.w2)

    def teacher_params(self) -> dict:
        """The `ede-gan` detector a teacher is trained as when no `teacher_dir` is given."""
        return {"threshold_quantile": self.threshold_quantile, "validation_fraction": self.validation_fraction,
                "random_state": self.random_state, "preset": self.teacher_preset,
                "budget": self.teacher_budget, "width": self.teacher_width, "device": self.device,
                "progress": self.progress}

    def _teacher(self, x: torch.Tensor, x_val: torch.Tensor) -> _GANDetector:
        if self.teacher_dir is not None:
            teacher = load(self.teacher_dir)
            if not isinstance(teacher, _GANDetector) or not teacher.config(x.shape[1]).second_encoder:
                raise ValueError(f"{self.teacher_dir}: the teacher must be a saved ede-gan or edhat-gan "
                                 f"detector, found {teacher.name!r}")
            if tuple(teacher.input_shape_) != tuple(x.shape[1:]):
                raise ValueError(f"{self.teacher_dir}: teacher was fitted on images of shape "
                                 f"{tuple(teacher.input_shape_)}, these are {tuple(x.shape[1:])}")
            if teacher.train_fingerprint_ not in (None, fingerprint(x)):
                warnings.warn(f"{self.teacher_dir}: the teacher was trained on other images than these "
                              "(another class, seed or validation split?); distilling anyway", stacklevel=3)
            return teacher
        params = self.teacher_params()
        if self.teacher_cache is None:
            return self._fit_teacher(params, x, x_val, None)
        key = teacher_key(EDEGANDetector(**params), x, x_val)
        folder = Path(self.teacher_cache) / key
        # One trainer per teacher: a student in another process waits, then loads what it saved.
        with file_lock(Path(self.teacher_cache) / f".{key}.lock"):
            if (folder / CONFIG_FILE).is_file():
                return load(folder)
            checkpoints = Path(self.teacher_cache) / f".{key}.checkpoints"
            teacher = self._fit_teacher(params, x, x_val, checkpoints)
            teacher.save(folder)  # atomic: a folder appears whole or not at all
            remove_tree_inside(self.teacher_cache, checkpoints)
        return teacher

    def _fit_teacher(self, params: dict, x, x_val, checkpoints: Path | None) -> EDEGANDetector:
        if checkpoints is None and self.checkpoint_dir is not None:
            checkpoints = Path(self.checkpoint_dir) / "teacher"
        teacher = EDEGANDetector(**params, checkpoint_dir=str(checkpoints) if checkpoints else None,
                                 resume=self.resume or checkpoints is not None)
        return teacher.fit(x, x_val)

    def _fit(self, x, x_val):
        teacher = self._teacher(x, x_val)
        student_cfg = self.config(channels=x.shape[1])
        teacher_cfg = dataclasses.replace(teacher.config(x.shape[1]), device=student_cfg.device)
        result = train_distill(
            self.distill_config(), student_cfg, teacher_cfg, teacher.generator_, teacher.discriminator_,
            x, x_val, checkpoint_dir=Path(self.checkpoint_dir) / "distill" if self.checkpoint_dir else None,
            resume=self.resume, progress=self.progress, on_epoch_end=self._diagnostic_monitor(student_cfg))
        self.generator_, self.discriminator_ = result.student.cpu(), result.student_discriminator.cpu()
        self.history_, self.selected_epoch_ = result.history, result.selected_epoch
        self.train_fingerprint_ = fingerprint(x)
        self.teacher_ = teacher
        self.teacher_summary_ = {"source": self.teacher_dir or "trained for this fit",
                                 "params": teacher.get_params(), "threshold": teacher.threshold_,
                                 "train_fingerprint": teacher.train_fingerprint_}

    def _info(self) -> dict:
        return {**super()._info(), "distill": dataclasses.asdict(self.distill_config()),
                "teacher": getattr(self, "teacher_summary_", None)}

    def _load_state(self, tensors, info):
        super()._load_state(tensors, info)
        self.teacher_summary_ = info.get("teacher")


def teacher_key(teacher: _GANDetector, x: torch.Tensor, x_val: torch.Tensor) -> str:
    """Cache key of a teacher: the resolved values it trains with (never preset or budget names,
    whose meaning may change), the training code's version, and the fingerprints of its images."""
    config = dataclasses.asdict(teacher.config(x.shape[1]))
    config.pop("device")  # where it ran does not change what it is
    key_src = {"config": config, "threshold_quantile": teacher.threshold_quantile,
               "validation_fraction": teacher.validation_fraction, "training_code": TRAINING_CODE_VERSION,
               "noveltykit": __version__}
    return hashlib.sha256(json.dumps([key_src, fingerprint(x), fingerprint(x_val)], sort_keys=True)
                          .encode()).hexdigest()[:16]


def offer_teacher(detector, X, X_val, cache: str | Path) -> bool:
    """File a fitted `ede-gan` in a teacher cache under its key, so that a `kdgan` student whose
    teacher would train with the same resolved values on the same images uses it instead. Fitting
    is deterministic, so this is the very teacher the student would train."""
    if type(detector) is not EDEGANDetector or not hasattr(detector, "threshold_"):
        return False
    x, x_val = as_image_tensor(X), as_image_tensor(X_val)  # as `fit` saw them
    folder = Path(cache) / teacher_key(detector, x, x_val)
    if not (folder / CONFIG_FILE).is_file():
        detector.save(folder)
    return True
