"""How a fit runs, kept apart from what a detector is (its hyper-parameters).

A `RunContext` goes to a detector through `detector.configure(ctx)`, explicitly; nothing in it is
a parameter, so none of it reaches `get_params()`, a results record's `params` or a saved
`config.json`. A detector reads only the fields that concern it and ignores the others.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

FEATURE_ENGINE_ENV = "NOVELTYKIT_FEATURE_ENGINE"


@dataclass(frozen=True)
class RunContext:
    checkpoint_dir: Path | None = None  # trained detectors: a checkpoint every epoch, here
    resume: bool = False  # continue from the checkpoint in checkpoint_dir (same config only)
    device: str | None = None  # "cpu" or "cuda[:N]"; None: the CPU
    progress: bool = False  # progress bars inside a fit, and over a long scoring's batches
    # distillation: teachers trained for a fit are kept here and shared, keyed by what they are
    teacher_cache: Path | None = None
    # fitted models kept by what they were fitted on (`fit_cache.fit_cached`): an ensemble's member
    # that a sweep's trial already fitted on the same images is loaded, not fitted again
    fit_cache: Path | None = None
    # pretrained features: extractor -> a store of the dataset's features (each image extracted once)
    feature_store: Callable[[Any], Any] | None = None
    # pretrained features: "auto" (ONNX Runtime on a CPU where installed), "onnxruntime" or "torch";
    # by default from the environment's NOVELTYKIT_FEATURE_ENGINE, so every command can be told
    feature_engine: str = field(default_factory=lambda: os.environ.get(FEATURE_ENGINE_ENV, "auto"))
    # diagnostics after each epoch: monitor(score_fn) -> {name: number}, score_fn(images) -> scores.
    # Recorded in the history, never used to choose (the training loop refuses colliding names).
    monitor: Callable[[Callable[[Any], np.ndarray]], dict] | None = None

    @property
    def torch_device(self) -> str:
        return self.device or "cpu"
