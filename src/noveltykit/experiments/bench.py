"""The benchmark runner: every (class, seed, method) cell of one dataset and protocol.

Each finished cell is filed at once (`cellstore`: its own file, results.json rebuilt), so a killed
run loses at most the cell in progress, a rerun with the same `--out` skips what is done, and
several processes may share one `--out`.
"""
from __future__ import annotations

import importlib
import io
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..analysis.heatmaps import map_grid, png_bytes
from ..analysis.metrics import all_metrics, auroc, pixel_auroc, pro_auc
from ..analysis.plots import plot_cell, plot_step_trace, plot_training_curves
from ..analysis.report import write_report
from ..data import load_dataset
from ..data.images import ImageDataset
from ..data.protocols import PROTOCOLS, make_split
from ..detectors import make
from ..detectors.context import RunContext
from ..detectors.fit_cache import FitBusy, claim, fit_cached
from ..detectors.specs import MethodSpec
from ..features.store import dataset_feature_store
from ..fileio import BUSY, DONE, atomic_write_bytes, atomic_write_json, remove_tree_inside, safe_name
from .cellstore import EXPERIMENT_FIELDS, CellStore, cell_id, cell_key, load_results  # noqa: F401 (API)
from .executors import DEFERRED, ExecutorConfig, busy_last, run_each
from .provenance import git_commit, machine, package_versions, peak_rss_gib
from .tracking import summary_writer, write_cell_events

@dataclass
class BenchConfig:
    dataset: str
    methods: list[str | MethodSpec]
    protocol: str = "one-vs-rest"
    classes: list[int | str] | str = "all"
    seeds: list[int] = field(default_factory=lambda: [0])
    val_fraction: float = 0.1
    image_size: int = 32  # images are loaded at this side (the papers' 32 by default)
    out: str = "runs/bench"
    data_dir: str | None = None
    plots: bool = True
    curves: bool = False  # trained detectors: test AUROC after every epoch, as a labelled diagnostic
    save_models: bool = False  # write each cell's fitted detector under models/
    # Where trained detectors run ("cuda", "cuda:1"); None = each detector's own default (cpu).
    # Not part of a method's label: the same method on another device fills the same column.
    device: str | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where cells run: not in any record's params
    tensorboard: str | None = None  # also write each cell's curves and metrics as TensorBoard events here
    # fitted models kept here by what they were fitted on (`detectors.fit_cache`): a cell whose fit a
    # sweep or another run made on the same images loads it. Not in any record's params.
    fit_cache: str | None = None
    imports: tuple[str, ...] = ()  # modules that register detectors of the user's own, imported here and in workers
    command: str = ""

    def __post_init__(self):
        import_modules(self.imports)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}")
        if not self.methods:
            raise ValueError("give at least one method")
        self.methods = [m if isinstance(m, MethodSpec) else MethodSpec.parse(m)  # fail before any work
                        for m in self.methods]
        for spec in self.methods:  # parameter mistakes fail here, not in every cell
            make(spec.detector, **dict(spec.params))
        if not self.seeds:
            raise ValueError("give at least one seed")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1): thresholds and selection need normal "
                             f"validation images, got {self.val_fraction}")
        if self.device is not None:
            check_device(self.device)
        self.executor.check_installed()  # a missing optional extra fails here, before any work
        if self.tensorboard:
            summary_writer()


def import_modules(names) -> None:
    """Import the modules that register a user's own detectors (`bench --import`)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--import {name}: {exc}") from None


def check_device(device: str) -> None:
    """Fail before any work when the device cannot be used."""
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch sees no CUDA device")


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
             device: str | None = None, maps_grid: Path | None = None,
             fit_cache: Path | None = None) -> tuple[dict, np.ndarray, np.ndarray, float]:
    """Fit on normal training images, threshold on normal validation images, score the test split.

    Everything about how the fit runs goes to the detector in one RunContext, the same for every
    family: trained detectors checkpoint every epoch into `checkpoint_dir` and resume from it (a
    killed benchmark loses at most one epoch); distilled students keep the teachers they train in
    `teacher_cache`, shared by every student of that cell; feature detectors extract each image of
    the dataset once. `model_dir`: save the model. `maps_grid`: where a detector with maps on a
    dataset with masks draws its most and least novel test images (`write_maps_grid`); the record
    then names it as `maps_grid`. `fit_cache`: load the fit from there if it was made before on
    the same images (the record then says `fit_loaded_from_cache`), else fit and keep it there.
    """
    split = make_split(ds, protocol, cls, seed, val_fraction)
    train_x, val_x, test_x, is_novel = split.arrays(ds)
    detector = make(spec.detector, **{"random_state": seed, **dict(spec.params)})
    monitor = (lambda score: {"diagnostic_test_auroc": auroc(is_novel, score(test_x))}) if curves else None
    features = (lambda extractor: dataset_feature_store(ds, extractor)) if "feature_store" in detector.run_needs else None
    detector.configure(RunContext(
        checkpoint_dir=checkpoint_dir, resume=checkpoint_dir is not None, device=device, progress=progress,
        teacher_cache=teacher_cache, feature_store=features, monitor=monitor, fit_cache=fit_cache))
    t0 = time.perf_counter()
    # the class labels of the normal training images (one class under one-vs-rest), never a novel one
    detector, loaded = fit_cached(detector, train_x, val_x, y=ds.normal_labels(split.train_idx))
    fit_seconds = time.perf_counter() - t0
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
        **({"fit_loaded_from_cache": loaded} if fit_cache is not None else {}),  # then fit_seconds is a load
        "resumed": not loaded and detector.fit_resumed(),  # then fit_seconds are the rest's only
        "n_train": len(train_x), "n_val": len(val_x), "n_test": len(test_x),
        "n_test_novel": int(is_novel.sum()), "val_fraction": val_fraction,
        "device": device or "cpu",  # how it ran, not what it is: not among the params
        "threads": torch.get_num_threads(), "process_peak_rss_gib": peak_rss_gib(),
        **detector.fit_report(),  # e.g. a trained detector's history and selected epoch
    }
    companions = detector.companions()  # e.g. a distilled student's teacher, an ensemble's members
    for role, other in companions.items():
        record[f"{role}_auroc"] = auroc(is_novel, other.decision_function(test_x))
    if companions:
        record["companions"] = list(companions)  # the roles: `report --companions` reads them
    record.update(where_metrics(ds, split, detector, test_x, scores))
    if maps_grid is not None and write_maps_grid(maps_grid, ds, split, detector, test_x, scores):
        record["maps_grid"] = str(maps_grid)
    if model_dir is not None:
        detector.save(model_dir)
    return record, is_novel, scores, detector.threshold_


def where_metrics(ds: ImageDataset, split, detector, test_x, scores) -> dict:
    """Where the novelty is, for a dataset with defect kinds and masks (MVTec AD's layout): the
    image AUROC of good images against each kind alone, and, from a detector that gives maps,
    pixel AUROC and PRO (`analysis.metrics`) with the seconds the maps took. Nothing elsewhere."""
    if getattr(ds, "test_kinds", None) is None:
        return {}
    kinds = ds.test_kinds[split.test_idx]
    good = ~split.test_is_novel
    out: dict = {"auroc_by_kind": {str(k): auroc(np.r_[np.zeros(good.sum()), np.ones((kinds == k).sum())],
                                                 np.r_[scores[good], scores[kinds == k]])
                                   for k in sorted(set(kinds[~good]))}}
    if not detector.produces_maps:
        return out
    try:
        masks = ds.pixel_masks(split.test_idx)
    except ValueError as exc:  # a kind without masks: no pixel metric rather than a partial one
        return {**out, "pixel_metrics_missing": str(exc)}
    t0 = time.perf_counter()
    maps = detector.anomaly_map(test_x)
    return {**out, "pixel_auroc": pixel_auroc(masks, maps), "pro": pro_auc(masks, maps),
            "map_seconds": time.perf_counter() - t0}


GRID_IMAGES = 4  # the most and the least novel test images a maps grid shows, each


def write_maps_grid(path: Path, ds: ImageDataset, split, detector, test_x, scores) -> bool:
    """A cell's maps at a glance (`analysis.heatmaps.map_grid`): its GRID_IMAGES most and least novel
    test images, each beside its overlay on the model's scale, their ground-truth masks outlined.
    Only for a detector that gives maps on a dataset with masks (MVTec AD's layout); False, and
    nothing written, elsewhere."""
    if not detector.produces_maps or getattr(ds, "test_masks", None) is None \
            or getattr(detector, "pixel_threshold_", None) is None:
        return False
    order = np.argsort(-scores, kind="stable")
    chosen = np.unique(np.r_[order[:GRID_IMAGES], order[::-1][:GRID_IMAGES]])
    idx = split.test_idx[chosen]
    known = ds.test_has_mask[idx] if ds.test_has_mask is not None else np.ones(len(idx), bool)
    masks = ds.test_masks[idx] * known[:, None, None]  # a mask not known is not drawn
    kinds = ds.test_kinds[idx] if ds.test_kinds is not None else ["novel" if n else "normal"
                                                                  for n in split.test_is_novel[chosen]]
    floor = getattr(detector, "map_floor_", None)
    grid = map_grid(test_x[chosen], detector.anomaly_map(test_x[chosen]), scores[chosen],
                    detector.pixel_threshold_, 0.0 if floor is None else floor, masks=masks,
                    labels=[f"{k} {s:.4g}" for k, s in zip(kinds, scores[chosen])], k=GRID_IMAGES)
    atomic_write_bytes(path, png_bytes(grid))
    return True


class BenchFailed(RuntimeError):
    """Some cells raised; every other cell finished and is saved. `failures` holds their records,
    `causes` the exceptions."""

    def __init__(self, failed: list[tuple[dict, Exception]]):
        self.failures, self.causes = [f for f, _ in failed], [e for _, e in failed]
        lines = [f"  class {f['class_name']} seed {f['seed']} {f['method']}: {f['error_type']}: {f['error']}"
                 for f in self.failures]
        super().__init__(f"{len(failed)} cell(s) failed (the others are saved; rerun to retry "
                         "these):\n" + "\n".join(lines))


def run_benchmark(cfg: BenchConfig, *, dataset: ImageDataset | None = None, progress: bool = True
                  ) -> list[dict]:
    """Run every cell not yet done; return all finished cells of the folder.

    Several processes may share one `cfg.out`: each cell is claimed by a lock, cells another process
    is running are waited for at the end (and run here if that process died), and every finished cell
    is its own file. A cell that raises is recorded as failed and the run goes on; BenchFailed at the end.
    """
    ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, progress=progress,
                                                          size=cfg.image_size)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    store = CellStore(out)
    experiment = {"dataset": ds.name, "protocol": cfg.protocol, "val_fraction": cfg.val_fraction,
                  "image_size": int(ds.train_x.shape[-1])}
    store.check_experiment(experiment)  # written with the first finished cell, not before
    store.adopt_legacy()
    cells = [(c, s, m) for c in resolve_classes(ds, cfg.classes, cfg.protocol) for s in cfg.seeds
             for m in cfg.methods]
    done = store.done_ids()
    todo = [cell for cell in cells if _id(ds, cfg, cell) not in done]
    if len(todo) < len(cells):
        print(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already in {out}", file=sys.stderr)
    provenance = {"versions": package_versions(), "git_commit": git_commit(), "machine": machine(),
                  "data_source": ds.source}
    # A teacher folder when a detector of the run asks for one (its contract's `run_needs`); every
    # cell of the run gets it, so a detector that can serve as a teacher files itself there.
    # (read on an instance: an ensemble's needs are its members')
    needs = set().union(*(make(spec.detector, **dict(spec.params)).run_needs for spec in cfg.methods))
    teachers = out / "teachers" if "teacher_cache" in needs else None
    failed: list[tuple[dict, Exception]] = []
    ran = 0
    bar = tqdm(total=len(todo), desc=f"{ds.name} {cfg.protocol}", unit="cell", disable=not progress)

    def attempt(cell, wait: bool) -> str | None:
        """Run `cell` unless it is done; DEFERRED when another process holds it, or a fit it needs
        (in the shared fit cache, or a student's teacher), and wait=False."""
        key = _id(ds, cfg, cell)
        if wait:
            bar.set_postfix_str(f"waiting for another process: class {cell[0]} seed {cell[1]} {cell[2].label}")

        def work():
            nonlocal ran
            bar.set_postfix_str(f"class {ds.class_names[cell[0]]} seed {cell[1]} {cell[2].label}")
            failure = _run_and_file(ds, cfg, cell, store, experiment, provenance, teachers, progress)
            ran += 1
            if failure is not None:
                failed.append(failure)
                record = failure[0]
                tqdm.write(f"cell failed: class {record['class_name']} seed {record['seed']} "
                           f"{record['method']}: {record['error_type']}: {record['error']}", file=sys.stderr)

        if claim(store.lock_path(key), lambda: store.is_done(key), work, wait)[0] == BUSY:  # DONE: finished elsewhere
            return DEFERRED
        bar.update(1)
        return None

    if cfg.executor.kind == "serial":
        # Cells another process is running are left for last, then waited for: if that process
        # dies, its lock goes with it and the cell runs here.
        for _ in busy_last(attempt, todo):
            pass
    else:
        def on_done(cell, result):
            nonlocal ran
            if result == DONE_ELSEWHERE:
                bar.update(1)
                return
            ran += 1
            if isinstance(result, Exception):  # its worker died, retries times over: file that
                record = _failure_record(ds, cfg, cell, result, provenance, tb=f"{type(result).__name__}: {result}")
                record["retries"] = cfg.executor.retries
                store.add_failure(record)
                result = record
            if result is not None:
                failed.append((result, RuntimeError(result["error"])))
                tqdm.write(f"cell failed: class {result['class_name']} seed {result['seed']} {result['method']}: "
                           f"{result['error_type']}: {result['error']}", file=sys.stderr)
            bar.update(1)

        run_each(_cell_task, todo, cfg.executor, on_done, ds=ds, cfg=cfg, experiment=experiment,
                 provenance=provenance, teachers=teachers)
    bar.close()
    if ran < len(todo):
        print(f"{len(todo) - ran} cell(s) were finished by another process writing to {out}", file=sys.stderr)
    with store.folder_lock():  # the report of whoever finishes last sees every cell
        results = store.results()
        write_report(out, results)
    if failed:
        raise BenchFailed(failed)
    return results


def _id(ds: ImageDataset, cfg: BenchConfig, cell) -> str:
    cls, seed, spec = cell
    return cell_id(ds.name, cfg.protocol, cls, seed, spec.label)


DONE_ELSEWHERE = "done elsewhere"  # what a worker returns for a cell another process finished


def _cell_task(cell, *, wait: bool, ds, cfg: BenchConfig, experiment: dict, provenance: dict,
               teachers: Path | None):
    """One cell in an executor's worker: claim it (another process may be running it), run and
    file it. Returns its failure record, or None; DONE_ELSEWHERE when another process had finished
    it; DEFERRED when another process holds the cell or a fit it needs, and wait=False."""
    import_modules(cfg.imports)
    store = CellStore(cfg.out)
    key = _id(ds, cfg, cell)
    status, failure = claim(store.lock_path(key), lambda: store.is_done(key),
                            lambda: _run_and_file(ds, cfg, cell, store, experiment, provenance, teachers,
                                                  progress=False), wait)
    if status == BUSY:
        return DEFERRED
    if status == DONE:
        return DONE_ELSEWHERE
    return None if failure is None else failure[0]


def _failure_record(ds, cfg: BenchConfig, cell, exc: BaseException, provenance: dict, tb: str) -> dict:
    cls, seed, spec = cell
    return {"dataset": ds.name, "protocol": cfg.protocol, "class": cls, "class_name": ds.class_names[cls],
            "seed": seed, "method": spec.label, "error_type": type(exc).__name__, "error": str(exc),
            "traceback": tb, "command": cfg.command, "executor": cfg.executor.kind, **provenance,
            "finished": datetime.now(timezone.utc).isoformat(timespec="microseconds")}


def cell_stem(spec: MethodSpec, cls: int, seed: int) -> str:
    """Where a cell's files go below --out: a safe name from the label (a label may hold any text,
    e.g. a teacher path), never a path of its own."""
    return f"{safe_name(spec.label)}/class{cls}_seed{seed}"


def _run_and_file(ds, cfg: BenchConfig, cell, store: CellStore, experiment: dict, provenance: dict,
                  teachers: Path | None, progress: bool) -> tuple[dict, Exception] | None:
    """Run one cell and file it (scores, plots, record); on an error file a failure record and
    return it with the exception."""
    cls, seed, spec = cell
    out = store.out
    stem = cell_stem(spec, cls, seed)
    try:
        record, is_novel, scores, threshold = run_cell(
            ds, cfg.protocol, cls, seed, spec, cfg.val_fraction, cfg.curves,
            checkpoint_dir=out / "checkpoints" / stem,
            model_dir=out / "models" / stem if cfg.save_models else None, progress=progress,
            teacher_cache=teachers, device=cfg.device,
            maps_grid=out / "maps" / f"{stem}.png" if cfg.plots else None,
            fit_cache=Path(cfg.fit_cache) if cfg.fit_cache else None)
    except FitBusy:  # not a failure: the caller comes back to this cell when that fit is made
        raise
    except Exception as exc:  # recorded, and the run goes on; Ctrl-C and kills are not caught
        failure = _failure_record(ds, cfg, cell, exc, provenance, tb=traceback.format_exc())
        store.add_failure(failure)
        return failure, exc
    record.update(provenance, command=cfg.command, executor=cfg.executor.kind,
                  finished=datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    if cfg.save_models:
        record["model"] = f"models/{stem}"
    if "maps_grid" in record:  # below --out, as the plots are named
        record["maps_grid"] = f"maps/{stem}.png"
    atomic_write_bytes(out / "scores" / f"{stem}.npz", _npz_bytes(scores=scores, is_novel=is_novel))
    if cfg.plots:
        title = f"{ds.name} {cfg.protocol} class {cls} ({ds.class_names[cls]}) seed {seed} - {spec.label}"
        plot = plot_cell(out / "plots" / f"{stem}.png", is_novel, scores, title, record["auroc"], threshold)
        record["plot"] = str(plot.relative_to(out))
        if record.get("history"):
            curve = plot_training_curves(out / "plots" / f"{stem}_curves.png", record["history"],
                                         title, record["selected_epoch"])
            record["curves_plot"] = str(curve.relative_to(out))
        if record.get("trace"):  # a per-step trace (the GAN lab's): its curves too
            steps = plot_step_trace(out / "plots" / f"{stem}_steps.png", record["trace"], title,
                                   record.get("pathology_events", []), record.get("history", []))
            record["steps_plot"] = str(steps.relative_to(out))
    trace = record.pop("trace", None)
    if trace:  # thousands of numbers a cell: a file of its own, not in results.json
        atomic_write_json(out / "traces" / f"{stem}.json", trace)
        record["trace_file"] = f"traces/{stem}.json"
    if cfg.tensorboard:  # a view of the record, written before it: a rerun of the cell replaces it
        record["tensorboard"] = str(write_cell_events(cfg.tensorboard, stem, record, trace))
    store.add(record, experiment)
    if (out / "checkpoints" / stem).exists():  # the cell is safe in cells/
        remove_tree_inside(out, out / "checkpoints" / stem)
    return None


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
