"""The benchmark runner: every (class, seed, method) cell of one dataset and protocol.

Each finished cell is appended to `results.json` at once (atomically), so a killed run loses at
most the cell in progress and a rerun with the same `--out` skips what is done.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import load_dataset
from ..data.images import ImageDataset
from ..data.protocols import PROTOCOLS, make_split
from ..detectors import make
from ..detectors.kdgan import offer_teacher
from ..features.store import dataset_feature_store
from ..fileio import atomic_write_bytes, atomic_write_json
from .methods import MethodSpec
from .metrics import all_metrics, auroc
from .plots import plot_cell, plot_training_curves
from .provenance import git_commit, machine, package_versions
from .report import write_report

# Fields that define the experiment: results under one --out must agree on them.
EXPERIMENT_FIELDS = ("dataset", "protocol", "val_fraction")


@dataclass
class BenchConfig:
    dataset: str
    methods: list[str | MethodSpec]
    protocol: str = "one-vs-rest"
    classes: list[int | str] | str = "all"
    seeds: list[int] = field(default_factory=lambda: [0])
    val_fraction: float = 0.1
    out: str = "runs/bench"
    data_dir: str | None = None
    plots: bool = True
    curves: bool = False  # trained detectors: test AUROC after every epoch, as a labelled diagnostic
    save_models: bool = False  # write each cell's fitted detector under models/
    # Where trained detectors run ("cuda", "cuda:1"); None = each detector's own default (cpu).
    # Not part of a method's label: the same method on another device fills the same column.
    device: str | None = None
    command: str = ""

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}")
        if not self.methods:
            raise ValueError("give at least one method")
        self.methods = [m if isinstance(m, MethodSpec) else MethodSpec.parse(m)  # fail before any work
                        for m in self.methods]
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.device is not None:
            check_device(self.device)


def check_device(device: str) -> None:
    """Fail before any work when the device cannot be used."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch sees no CUDA device")


def cell_key(record: dict) -> tuple:
    return (record["dataset"], record["protocol"], record["class"], record["seed"], record["method"])


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path} is not a noveltykit results file ({exc}); move it or pick another --out")


def _check_same_experiment(out: Path, experiment: dict) -> None:
    path = out / "experiment.json"
    if path.exists():
        before = json.loads(path.read_text())
        diff = {k: (before.get(k), v) for k, v in experiment.items() if before.get(k) != v}
        if diff:
            raise ValueError(f"{out} holds results of another experiment ({diff}, was -> now); "
                             "pick another --out")
    else:
        atomic_write_json(path, experiment)


def resolve_classes(ds: ImageDataset, classes, protocol: str) -> list[int]:
    """'all' = every class the protocol can train for (a folder dataset's 'novel' class has no
    training images, so one-vs-rest skips it)."""
    if classes == "all" or classes == ["all"]:
        counts = np.bincount(ds.train_y, minlength=len(ds.class_names))
        normal = counts if protocol == "one-vs-rest" else counts.sum() - counts
        return [c for c in range(len(ds.class_names)) if normal[c] >= 2]
    return [ds.class_index(c) for c in classes]


def run_cell(ds: ImageDataset, protocol: str, cls: int, seed: int, spec: MethodSpec,
             val_fraction: float, curves: bool = False, checkpoint_dir: Path | None = None,
             model_dir: Path | None = None, progress: bool = False, teacher_cache: Path | None = None,
             device: str | None = None) -> tuple[dict, np.ndarray, np.ndarray, float]:
    """Fit on normal training images, threshold on normal validation images, score the test split.

    Trained detectors checkpoint every epoch into `checkpoint_dir` (unless the spec names one) and
    resume from it, so a killed benchmark loses at most one epoch. `model_dir`: save the model.
    Distilled students keep the teachers they train in `teacher_cache`, one per class and seed,
    shared by every student of that cell (unless the spec names a teacher or a cache).
    `device`: for detectors that take one, unless the spec names it.
    """
    split = make_split(ds, protocol, cls, seed, val_fraction)
    train_x, val_x, test_x, is_novel = split.arrays(ds)
    detector = make(spec.detector, **{"random_state": seed, **dict(spec.params)})
    params = detector.get_params()
    if checkpoint_dir is not None and "checkpoint_dir" in params and params["checkpoint_dir"] is None:
        detector.checkpoint_dir, detector.resume = str(checkpoint_dir), True
    if teacher_cache is not None and params.get("teacher_cache", False) is None and params["teacher_dir"] is None:
        detector.teacher_cache = str(teacher_cache)
    if device is not None and "device" in params and "device" not in dict(spec.params):
        detector.device = device
    if progress and params.get("progress") is False and "progress" not in dict(spec.params):
        detector.progress = True  # per-epoch bars inside a long cell
    if curves and hasattr(detector, "epoch_monitor"):
        detector.epoch_monitor = lambda score: {"diagnostic_test_auroc": auroc(is_novel, score(test_x))}
    feature_seconds = None
    if hasattr(detector, "feature_store"):  # pretrained features: each image extracted once, cached
        t0 = time.perf_counter()
        detector.feature_store = dataset_feature_store(ds, detector.extractor())
        feature_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    detector.fit(train_x, val_x)
    fit_seconds = time.perf_counter() - t0
    if teacher_cache is not None:  # a plain ede-gan is also the teacher its students would train
        offer_teacher(detector, train_x, val_x, teacher_cache)
    t0 = time.perf_counter()
    scores = detector.decision_function(test_x)
    score_seconds = time.perf_counter() - t0
    flagged = scores > detector.threshold_
    record = {
        "dataset": ds.name, "protocol": protocol, "class": cls, "class_name": ds.class_names[cls],
        "seed": seed, "method": spec.label, "detector": spec.detector, "params": detector.get_params(),
        **all_metrics(is_novel, scores),
        "threshold": detector.threshold_,
        # How the validation-chosen threshold fares on test: reported, never tuned on.
        "test_fpr_at_threshold": float(flagged[~is_novel].mean()),
        "test_tpr_at_threshold": float(flagged[is_novel].mean()),
        "fit_seconds": fit_seconds, "score_seconds": score_seconds,
        **({"feature_seconds": feature_seconds} if feature_seconds is not None else {}),
        "n_train": len(train_x), "n_val": len(val_x), "n_test": len(test_x),
        "n_test_novel": int(is_novel.sum()), "val_fraction": val_fraction,
    }
    if getattr(detector, "teacher_", None) is not None:  # a distilled student: its teacher, same cell
        record["teacher_auroc"] = auroc(is_novel, detector.teacher_.decision_function(test_x))
    if hasattr(detector, "history_"):  # trained detectors: the per-epoch record and the choice made
        record["history"] = detector.history_
        record["selected_epoch"] = detector.selected_epoch_
    if model_dir is not None:
        detector.save(model_dir)
    return record, is_novel, scores, detector.threshold_


def run_benchmark(cfg: BenchConfig, *, dataset: ImageDataset | None = None, progress: bool = True
                  ) -> list[dict]:
    ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_experiment(out, {"dataset": ds.name, "protocol": cfg.protocol,
                                 "val_fraction": cfg.val_fraction})
    results_path = out / "results.json"
    results = load_results(results_path)
    done = {cell_key(r) for r in results}
    specs = cfg.methods
    cells = [(c, s, m) for c in resolve_classes(ds, cfg.classes, cfg.protocol) for s in cfg.seeds for m in specs]
    todo = [(c, s, m) for c, s, m in cells
            if (ds.name, cfg.protocol, c, s, m.label) not in done]
    provenance = {"versions": package_versions(), "git_commit": git_commit(), "machine": machine(),
                  "data_source": ds.source}
    if len(todo) < len(cells):
        print(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already in {results_path}",
              file=sys.stderr)
    # Students distilled here share their teachers, and a plain ede-gan cell of the same run is one.
    teachers = out / "teachers" if any(spec.detector == "kdgan" for spec in specs) else None
    bar = tqdm(todo, desc=f"{ds.name} {cfg.protocol}", unit="cell", disable=not progress)
    for cls, seed, spec in bar:
        bar.set_postfix_str(f"class {ds.class_names[cls]} seed {seed} {spec.label}")
        stem = f"{spec.label.replace(':', '_').replace(',', '_').replace('=', '')}/class{cls}_seed{seed}"
        record, is_novel, scores, threshold = run_cell(
            ds, cfg.protocol, cls, seed, spec, cfg.val_fraction, cfg.curves,
            checkpoint_dir=out / "checkpoints" / stem,
            model_dir=out / "models" / stem if cfg.save_models else None, progress=progress,
            teacher_cache=teachers, device=cfg.device)
        record.update(provenance, command=cfg.command,
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if cfg.save_models:
            record["model"] = f"models/{stem}"
        np_bytes = _npz_bytes(scores=scores, is_novel=is_novel)
        atomic_write_bytes(out / "scores" / f"{stem}.npz", np_bytes)
        if cfg.plots:
            title = (f"{ds.name} {cfg.protocol} class {cls} ({ds.class_names[cls]}) seed {seed} "
                     f"- {spec.label}")
            plot = plot_cell(out / "plots" / f"{stem}.png", is_novel, scores, title, record["auroc"], threshold)
            record["plot"] = str(plot.relative_to(out))
            if record.get("history"):
                curve = plot_training_curves(out / "plots" / f"{stem}_curves.png", record["history"],
                                             title, record["selected_epoch"])
                record["curves_plot"] = str(curve.relative_to(out))
        results.append(record)
        atomic_write_json(results_path, {"results": results})
        shutil.rmtree(out / "checkpoints" / stem, ignore_errors=True)  # the cell is safe in results.json
    write_report(out, results)
    return results


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
