"""A student EDE-GAN distilled from a trained EDE-GAN teacher (P-KDGAN), as an ordinary detector.

`fit(X, X_val)` needs a teacher trained on the same normal images. It comes from `teacher_dir` (a
saved `ede-gan` detector, e.g. from `noveltykit bench --save-models`), or is trained here with
`teacher_preset` / `teacher_budget` and, when the RunContext names a `teacher_cache`, kept there
keyed by its resolved values and training images, so that several students of one class (and a
plain `ede-gan` of the same run) share one teacher.
The fitted detector is the student alone: it saves, loads and scores like `ede-gan` at its width.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch

from ..distill.distillation import PLAN_NAMES, DistillConfig, parse_structure, train_distill
from ..fileio import remove_tree_inside
from .base import CONFIG_FILE
from .context import RunContext
from .ede_gan import EDEGANDetector, _GANDetector, fingerprint, teacher_key
from .fit_cache import fit_once
from .registry import load, read_config, register
from .specs import MethodSpec


@register
class KDGANDetector(_GANDetector):
    """Parameters: `structure` (1-4 = KDGAN-n, p23 / p24 = P-KDGAN-II-23 / -24), `width` = the
    student's u, distillation weights w1, wx, w2, where the teacher comes from, and any GANConfig
    field for the student (its `epochs` is the length of each distillation step). The student's
    own `preset` is `student` (the teacher's `default` with a 10x higher learning rate). Ignores `y`."""

    name, variant = "kdgan", "ede"
    summary = "P-KDGAN: a small student distilled from EDE-GAN"
    run_needs = frozenset({"teacher_cache"})  # students of one run share the teachers they train
    teacher_ = None  # the teacher of the last fit (in memory only; not saved with the student)

    def __init__(self, threshold_quantile: float = 0.95, validation_fraction: float = 0.1,
                 random_state: int = 0, structure: str = "p23", width: int = 2, w1: float = 1.0,
                 wx: float = 1.0, w2: float = 1.0, teacher_dir: str | None = None, teacher_preset: str = "default",
                 teacher_budget: str = "cpu", teacher_width: int = 64, preset: str = "student", **gan):
        super().__init__(threshold_quantile, validation_fraction, random_state, width=width,
                         preset=preset, **gan)
        self.structure = parse_structure(structure)
        self.w1, self.wx, self.w2 = float(w1), float(wx), float(w2)
        self.distill_config()  # validate the weights now
        self.teacher_dir = teacher_dir
        self.teacher_preset, self.teacher_budget = teacher_preset, teacher_budget
        self.teacher_width = int(teacher_width)

    def distill_config(self) -> DistillConfig:
        return DistillConfig(self.structure, self.w1, self.wx, self.w2)

    def teacher_params(self) -> dict:
        """The `ede-gan` detector a teacher is trained as when no `teacher_dir` is given."""
        return {"threshold_quantile": self.threshold_quantile, "validation_fraction": self.validation_fraction,
                "random_state": self.random_state, "preset": self.teacher_preset,
                "budget": self.teacher_budget, "width": self.teacher_width}

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
        ctx = self.context
        teacher = EDEGANDetector(**self.teacher_params())
        if ctx.teacher_cache is None:
            checkpoints = Path(ctx.checkpoint_dir) / "teacher" if ctx.checkpoint_dir else None
            return self._fit_teacher(teacher, x, x_val, checkpoints)
        cache = Path(ctx.teacher_cache)
        key = teacher_key(teacher, x, x_val)
        def train_and_file():
            self._fit_teacher(teacher, x, x_val, cache / f".{key}.checkpoints")
            teacher.save(cache / key)  # atomic: a folder appears whole or not at all
            remove_tree_inside(cache, cache / f".{key}.checkpoints")
            return teacher

        # One trainer per teacher: a student in another process waits, then loads what it saved
        # (or, inside `defer_busy_fits`, is deferred by its runner: FitBusy)
        return fit_once(cache / f".{key}.lock",
                        lambda: load(cache / key) if (cache / key / CONFIG_FILE).is_file() else None,
                        train_and_file, f"the teacher {key}")[1]

    def _fit_teacher(self, teacher: EDEGANDetector, x, x_val, checkpoints: Path | None) -> EDEGANDetector:
        """Fit `teacher` where the student runs, checkpointed (and resumed) in `checkpoints`."""
        ctx = self.context
        teacher.configure(RunContext(checkpoint_dir=checkpoints, resume=checkpoints is not None,
                                     device=ctx.device, progress=ctx.progress))
        return teacher.fit(x, x_val)

    def _fit(self, x, x_val, y=None):
        if tuple(x.shape[2:]) != (32, 32):
            raise ValueError(f"kdgan distils the paper's 32x32 networks, got {x.shape[2]}x{x.shape[3]} images")
        teacher = self._teacher(x, x_val)
        student_cfg = self.config(channels=x.shape[1])
        teacher_cfg = dataclasses.replace(teacher.config(x.shape[1]), device=student_cfg.device)
        ctx = self.context
        result = train_distill(
            self.distill_config(), student_cfg, teacher_cfg, teacher.generator_, teacher.discriminator_,
            x, x_val, checkpoint_dir=Path(ctx.checkpoint_dir) / "distill" if ctx.checkpoint_dir else None,
            resume=ctx.resume, progress=ctx.progress, on_epoch_end=self._monitor())
        self.generator_, self.discriminator_ = result.student.cpu(), result.student_discriminator.cpu()
        self.history_, self.selected_epoch_ = result.history, result.selected_epoch
        self.train_fingerprint_ = fingerprint(x)
        self.teacher_ = teacher
        self.teacher_summary_ = {"source": self.teacher_dir or "trained for this fit",
                                 "params": teacher.get_params(), "threshold": teacher.threshold_,
                                 "train_fingerprint": teacher.train_fingerprint_}

    def companions(self) -> dict:
        return {"teacher": self.teacher_} if self.teacher_ is not None else {}

    def _info(self) -> dict:
        return {**super()._info(), "distill": dataclasses.asdict(self.distill_config()),
                "teacher": getattr(self, "teacher_summary_", None)}

    def _load_state(self, tensors, info):
        super()._load_state(tensors, info)
        self.teacher_summary_ = info.get("teacher")


def student_spec(structure: str = "p23", width: int = 2, preset: str = "student", budget: str = "cpu",
                 epochs: int | None = None, teacher: str | Path | None = None) -> tuple[MethodSpec, str]:
    """The `kdgan` spec of a student (`noveltykit distill`) and its plan's name (e.g. P-KDGAN-II-23).
    `teacher`: a saved ede-gan detector folder, checked now, before any work; its path is in the
    spec, not in its label (the column names the plan, not the folder)."""
    structure = parse_structure(structure)
    params = {"structure": structure, "width": width, "preset": preset, "budget": budget}
    if epochs is not None:
        params["epochs"] = epochs
    alias = "kdgan:" + ",".join(f"{k}={v}" for k, v in params.items())
    if teacher:
        read_config(Path(teacher))  # a bad folder fails here
        params["teacher_dir"] = str(Path(teacher).resolve())
    return MethodSpec("kdgan", tuple(params.items()), alias=alias), PLAN_NAMES[structure]
