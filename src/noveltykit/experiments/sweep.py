"""Hyper-parameter search judged on a development split of TRAINING images only.

    OUT/config.json       the sweep's config, written before any trial: one OUT holds one sweep
    OUT/trials/<id>.json  one finished trial (grid point, class), written atomically; a rerun skips it
    OUT/trials/<id>.lock  held by the process fitting that trial: processes sharing OUT share its trials
                          (`reuse`: another sweep's finished trial of the same spec and class is
                          copied in, marked `reused_from`, instead of refitted)
    OUT/trials/checkpoints/<id>-<fit key>/  a trained trial's checkpoint each epoch: a killed trial
                          resumes from its last epoch (the same fit only: the fit key names its
                          parameters and images); removed once the trial's record is written
    OUT/tune/sweep        the Ray Tune experiment (executor "ray" only), restored by a rerun
    OUT/sweep.json        every point's dev AUROC per class, the rule and its docstring, the choice
    OUT/sweep.md          the same as a table, the chosen row in bold
    OUT/sweep.png         mean dev AUROC per grid point (bars) and each class's (dots)

The split is `data.protocols.dev_split`: the normal class's validation images against other
classes' training images. Trials only ever see a `TrainOnly` view of the dataset, which raises on
any access to the test images, so no choice made here can have looked at them. The rule is fixed
before the run (by name, from `RULES`) and recorded with its docstring.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import io
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..analysis.metrics import auroc
from ..analysis.plots import pyplot
from ..data.images import ImageDataset
from ..data.protocols import dev_split
from ..detectors import make
from ..detectors.context import RunContext
from ..detectors.fit_cache import claim, fit_cached, fit_key
from ..detectors.specs import MethodSpec, parse_value
from ..fileio import atomic_write_bytes, atomic_write_json, remove_tree_inside
from . import provenance
from .bench import resolve_classes
from .executors import DEFERRED, EXECUTORS, RAY_INSTALL, ExecutorConfig, busy_last, ray_session

SPLIT_NOTE = "dev (normal validation vs other classes' training images; no test image read)"
# What makes two sweeps the same experiment: an OUT written by another refuses to be reused.
IDENTITY_FIELDS = ("dataset", "method", "grid", "variants", "classes", "seed", "rule", "image_size", "n_novel")
IDENTITY_DEFAULTS = {"variants": []}  # what a sweep written before the field existed had
ALL_CLASSES = "all"  # SweepConfig.classes: every class with training images (run_sweep resolves it)
TIE_DECIMALS = 6  # scores equal to this many decimals tie: float noise in a sum must not break a tie


# --- rules: fixed before the run; each takes the points' summaries and returns the chosen index ----

def _first_best(scores: list[float]) -> int:
    rounded = [round(s, TIE_DECIMALS) for s in scores]
    return rounded.index(max(rounded))  # .index: the first of equal bests


def mean_dev_auroc(summaries: list[dict]) -> int:
    """Highest mean over the listed classes of the final dev AUROC; means equal to 6 decimals tie,
    and a tie goes to the first grid point in grid order."""
    return _first_best([sum(s["aurocs"]) / len(s["aurocs"]) for s in summaries])


def worst_class_dev_auroc(summaries: list[dict]) -> int:
    """Highest minimum over the listed classes of the final dev AUROC; minima equal to 6 decimals
    tie, and a tie goes to the first grid point in grid order."""
    return _first_best([min(s["aurocs"]) for s in summaries])


RULES = {"mean-dev-auroc": mean_dev_auroc, "worst-class-dev-auroc": worst_class_dev_auroc}


def choose_by_rule(summaries: list[dict], rule: str) -> int:
    """The index of the summary `rule` chooses; a summary is a dict whose "aurocs" lists its final
    dev AUROCs (one per class, or one per run when pooling runs)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if not summaries:
        raise ValueError("no grid points to choose from")
    for s in summaries:
        if not s.get("aurocs") or not all(math.isfinite(a) for a in s["aurocs"]):
            raise ValueError(f"{s.get('label', s)}: no finite dev AUROC to judge it by")
    return RULES[rule](summaries)


# --- the data a trial may read ----------------------------------------------------------------------

class TrainOnly:
    """A dataset's training half: all that a sweep's trials get. Touching the test images raises."""

    def __init__(self, ds):
        self.name, self.source, self.class_names = ds.name, getattr(ds, "source", ""), list(ds.class_names)
        self.info = dict(getattr(ds, "info", {}) or {})
        self.train_x, self.train_y = ds.train_x, ds.train_y
        self.train_groups = getattr(ds, "train_groups", None)

    channels = ImageDataset.channels
    class_index = ImageDataset.class_index
    normal_labels = ImageDataset.normal_labels

    def _refuse(self, what: str):
        raise RuntimeError(f"{self.name}: a sweep chooses on training images only; it may not read {what}")

    test_x = property(lambda self: self._refuse("test_x"))
    test_y = property(lambda self: self._refuse("test_y"))
    test_masks = property(lambda self: self._refuse("test_masks"))
    test_kinds = property(lambda self: self._refuse("test_kinds"))

    def pixel_masks(self, test_idx=None):
        self._refuse("test masks")


# --- the config and its grid ------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One grid point: the detector, its full params (the method's, updated by the point's) and label."""

    detector: str
    params: dict
    changed: dict  # the grid's own params at this point
    label: str


@dataclass
class SweepConfig:
    dataset: str
    method: str  # a detector spec, e.g. NAME:lr=0.0001; the grid updates its params
    grid: dict  # param -> values (strings are parsed as in a method spec); first key varies slowest
    # class indices, or "all": every class with training images, which run_sweep resolves once it has
    # the data and records as that list (so `all` and the list it stands for are one sweep)
    classes: list | str
    out: str
    # or, instead of a grid: whole specs to compare with `method` (the incumbent, listed first, so
    # that a tie keeps it), e.g. other detectors or several params changed at once
    variants: list = field(default_factory=list)
    seed: int = 0
    rule: str = "mean-dev-auroc"
    image_size: int = 32
    data_dir: str | None = None
    n_novel: int = 2000
    executor: str = "serial"
    address: str | None = None  # a Ray cluster's; None: RAY_ADDRESS, else a local Ray
    cpus_per_trial: int = 1
    # how trials run, not what they are (not part of a sweep's identity): "cuda" for trained
    # detectors; a folder where distilled students keep the teachers they train
    device: str | None = None
    teacher_cache: str | None = None
    # a folder where every trial's fitted model is kept by what it was fitted on, so an ensemble
    # trial loads a member another trial (of this sweep or another) fitted on the same images
    fit_cache: str | None = None
    # the dev AUROC after every epoch of a trained detector, a diagnostic the rule never reads: it
    # costs one scoring pass of the dev split an epoch (for a slow scorer, as much as the training)
    curves: bool = False
    # other sweeps' OUT folders whose finished trials this one adopts instead of refitting them
    # (a trial is the same when dataset, class, seed, spec, image size and n_novel agree): a second
    # round of a study keeps the first round's incumbent without paying for it again
    reuse: list = field(default_factory=list)
    _points: list = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_pairs(cls, grid: list[tuple[str, list]], variants: list | None = None, **fields) -> "SweepConfig":
        """A config from a grid given as (key, values) pairs, as the command line's repeated --grid
        gives it: a key named twice (a dict would keep only its last values) and neither a grid
        nor variants are refused before anything else is checked."""
        keys = [k for k, _ in grid]
        if len(set(keys)) != len(keys):
            raise ValueError(f"--grid names a parameter twice: {keys}")
        if not grid and not variants:
            raise ValueError("give --grid KEY=V1,V2 or --variant SPEC (whole specs to compare with --method)")
        return cls(grid=dict(grid), variants=[] if variants is None else variants, **fields)

    def __post_init__(self):
        # Every mistake fails here, before any data is loaded or any detector trained.
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}")
        for name in ("seed", "image_size", "n_novel", "cpus_per_trial"):
            setattr(self, name, int(getattr(self, name)))
        if self.image_size < 8 or self.n_novel < 1 or self.cpus_per_trial < 1:
            raise ValueError("image_size must be >= 8, n_novel and cpus_per_trial >= 1")
        self.executor_config.check_installed()  # a missing extra fails now
        listed = [self.classes] if isinstance(self.classes, str) else list(self.classes)
        if listed == [ALL_CLASSES]:
            self.classes = ALL_CLASSES
        elif isinstance(self.classes, str):
            raise ValueError(f"classes must be {ALL_CLASSES!r} or a list of class indices, got {self.classes!r}")
        else:
            self.classes = [int(c) for c in listed]
            if not self.classes or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be a non-empty list without repeats, got {self.classes}")
        self.variants = [str(v) for v in self.variants]
        self.reuse = [str(r) for r in self.reuse]
        for folder in self.reuse:
            if not (Path(folder) / "trials").is_dir():
                raise ValueError(f"--reuse {folder}: no trials/ folder there (give another sweep's --out)")
        if self.variants and self.grid:
            raise ValueError("give a grid or variants, not both")
        if self.variants:
            self._points = variant_points([self.method, *self.variants])
        else:
            self.grid = _parse_grid(self.grid)
            self._points = grid_points(self.method, self.grid)
        for p in self._points:  # a bad name or value fails now, not after hours of other points
            make(p.detector, **{"random_state": self.seed, **p.params})

    @property
    def executor_config(self) -> ExecutorConfig:
        return ExecutorConfig(self.executor, address=self.address, cpus_per_cell=self.cpus_per_trial)

    @property
    def points(self) -> list[Point]:
        return self._points

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in IDENTITY_FIELDS}


def _parse_grid(grid: dict) -> dict:
    if not isinstance(grid, dict) or not grid:
        raise ValueError("the grid is empty: give at least one param and its values (key=v1,v2)")
    parsed = {}
    for key, values in grid.items():
        key = str(key).strip()
        if not key or isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"grid {key!r}: expected a param name and a list of values, got {values!r}")
        values = [parse_value(v.strip()) if isinstance(v, str) else v for v in values]
        if not values:
            raise ValueError(f"grid {key!r}: no values")
        if any(a == b for i, a in enumerate(values) for b in values[:i]):
            raise ValueError(f"grid {key!r}: duplicate values in {values}")
        parsed[key] = values
    return parsed


def grid_points(method: str, grid: dict) -> list[Point]:
    """The cartesian product of the grid in the order given (the first key varies slowest)."""
    spec = MethodSpec.parse(method)
    base = dict(spec.params)
    points = []
    for combo in itertools.product(*grid.values()):
        changed = dict(zip(grid, combo))
        params = {**base, **changed}  # a base param keeps its place in the label; new ones follow
        points.append(Point(spec.detector, params, changed, MethodSpec(spec.detector, tuple(params.items())).label))
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise ValueError(f"grid points with the same label: {labels}")
    return points


def variant_points(specs: list[str]) -> list[Point]:
    """One point per whole spec, in the order given."""
    points = []
    for text in specs:
        spec = MethodSpec.parse(text)
        points.append(Point(spec.detector, dict(spec.params), dict(spec.params), spec.label))
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise ValueError(f"variants with the same label: {labels}")
    return points


# --- trials -----------------------------------------------------------------------------------------

def trial_id(dataset: str, cls: int, seed: int, label: str, image_size: int, n_novel: int) -> str:
    text = json.dumps([dataset, int(cls), int(seed), label, int(image_size), int(n_novel)])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_trial(path: Path, expect: dict) -> dict | None:
    """A finished trial's record, or None when it is missing or is not this trial's."""
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record if all(record.get(k) == v for k, v in expect.items()) else None


def _trial_file(view: TrainOnly, cfg: SweepConfig, point: Point, cls: int, trials_dir: Path
                ) -> tuple[Path, dict]:
    """Where a trial's record lives, and the fields that say which trial a record is."""
    expect = {"dataset": view.name, "class": cls, "seed": cfg.seed, "spec": point.label,
              "image_size": cfg.image_size, "n_novel": cfg.n_novel}
    return Path(trials_dir) / f"{trial_id(*(expect[k] for k in expect))}.json", expect


def finished_trial(view: TrainOnly, cfg: SweepConfig, point: Point, cls: int, trials_dir: Path) -> dict | None:
    return _read_trial(*_trial_file(view, cfg, point, cls, trials_dir))


def adopt_trials(view: TrainOnly, cfg: SweepConfig, trials_dir: Path) -> int:
    """Copy into `trials_dir` each missing trial that a `cfg.reuse` sweep finished (checked field by
    field, as a rerun checks its own), marked `reused_from`; returns how many were adopted."""
    adopted = 0
    for point in cfg.points:
        for cls in cfg.classes:
            path, expect = _trial_file(view, cfg, point, cls, trials_dir)
            if _read_trial(path, expect) is not None:
                continue
            for folder in cfg.reuse:
                record = _read_trial(Path(folder) / "trials" / path.name, expect)
                if record is not None:
                    atomic_write_json(path, {**record, "reused_from": str(folder)})
                    adopted += 1
                    break
    return adopted


def run_trial(view: TrainOnly, cfg: SweepConfig, point: Point, cls: int, trials_dir: Path,
              split=None, extra=None, progress: bool = False, wait: bool = True) -> dict | None:
    """Fit one grid point on one class's dev split and record its dev AUROC; a finished trial is
    read back, not rerun. `split()` returns `dev_split`'s arrays (shared by a class's trials);
    `extra(detector)` adds fields to the record (a caller's own facts of the fitted detector);
    `progress` shows the fit's epochs (a trial can take many minutes).

    A trial is claimed by a lock beside its record, so processes sharing one OUT never fit it twice
    at once: one that finds it claimed waits and reads the other's record (or, `wait=False`,
    returns None at once). The kernel drops a dead process's lock, and the trial then runs here.
    With `wait=False` a fit that another process is making (in the shared fit cache, e.g. a
    benchmark's cell of the same class and seed, or a student's teacher) also gives None at once."""
    path, expect = _trial_file(view, cfg, point, cls, trials_dir)
    return claim(path.with_suffix(".lock"), lambda: _read_trial(path, expect),
                 lambda: _fit_trial(view, cfg, point, cls, path, expect, split, extra, progress), wait)[1]


def _fit_trial(view, cfg, point, cls, path, expect, split, extra, progress) -> dict:
    x, v, x_dev, y_dev = split() if split else dev_split(view, cls, cfg.seed, cfg.n_novel)
    detector = make(point.detector, **{"random_state": cfg.seed, **point.params})
    curve = []  # dev AUROC after each epoch (trained detectors only): diagnostics, never a choice
    monitor = (lambda score: curve.append(auroc(y_dev, score(x_dev))) or {}) if cfg.curves else None
    # Named by what the fit depends on (parameters, images: `fit_key`) besides the trial, so a
    # killed trial's epochs are resumed by that very fit only, never continued on other images or
    # settings. The trial's lock keeps the folder to one process.
    checkpoints = path.parent / "checkpoints" / f"{path.stem}-{fit_key(detector, x, v)}"
    detector.configure(RunContext(device=cfg.device, teacher_cache=cfg.teacher_cache, progress=progress,
                                  monitor=monitor, fit_cache=cfg.fit_cache and Path(cfg.fit_cache),
                                  checkpoint_dir=checkpoints, resume=True))
    t0 = time.perf_counter()
    detector, loaded = fit_cached(detector, x, v)
    seconds = time.perf_counter() - t0
    report = detector.fit_report()
    history = report.get("history", [])
    resumed = not loaded and detector.fit_resumed()
    if curve and resumed:  # the monitor saw only the epochs this process trained
        curve = [None] * (len(history) - len(curve)) + curve
    record = {**expect, "params": point.params,
              "dev_auroc_last": auroc(y_dev, detector.decision_function(x_dev)),
              "dev_auroc_curve": curve, "seconds": seconds, "process_peak_rss_gib": provenance.peak_rss_gib(),
              "fit_loaded_from_cache": loaded, "n_train": len(x), "n_dev": len(y_dev),
              "n_dev_novel": int(y_dev.sum()), "split": SPLIT_NOTE, "device": detector.context.torch_device,
              "val_loss": [h["val_loss"] for h in history],
              "resumed": resumed}  # then `seconds` are the rest's only
    for role, other in detector.companions().items():  # e.g. a student's teacher: the bar it aims at
        record[f"{role}_dev_auroc"] = auroc(y_dev, other.decision_function(x_dev))
    if extra is not None:
        record.update(extra(detector))
    atomic_write_json(path, record)
    for folder in path.parent.glob(f"checkpoints/{path.stem}-*"):  # the trial is safe in its record
        remove_tree_inside(path.parent, folder)
    return record


def _trial_or_deferred(view, cfg, point, cls, trials_dir, *, split=None, progress=False, wait):
    record = run_trial(view, cfg, point, cls, trials_dir, split, progress=progress, wait=wait)
    return DEFERRED if record is None else record


def _run_serial(view: TrainOnly, cfg: SweepConfig, trials_dir: Path, progress: bool) -> None:
    """Every trial, class by class; trials another process holds are left for last and waited for
    (two `noveltykit sweep` processes on one OUT share its trials)."""
    from tqdm.auto import tqdm

    splits = {}  # class by class: one dev split in memory at a time, made only if a trial needs it

    def split_of(cls):
        if cls not in splits:
            splits.clear()
            splits[cls] = functools.cache(lambda: dev_split(view, cls, cfg.seed, cfg.n_novel))
        return splits[cls]

    with tqdm(total=len(cfg.points) * len(cfg.classes), desc="sweep trials", disable=not progress) as bar:
        def attempt(item, wait):
            point, cls = item
            bar.set_postfix_str(f"{'waiting for another process: ' if wait else ''}class {cls} {point.label}")
            return _trial_or_deferred(view, cfg, point, cls, trials_dir, split=split_of(cls), progress=progress,
                                      wait=wait)

        for _ in busy_last(attempt, [(point, cls) for cls in cfg.classes for point in cfg.points]):
            bar.update()


# --- the Ray executor: one Tune trial per grid point, over all classes ---------------------------------

def _ray_trainable(config, view, cfg, trials_dir):
    """One Tune trial: one grid point on every class, each class's result written to OUT/trials as
    the serial executor writes it (so both give the same records, judged by the same rule code)."""
    import torch
    from ray import tune

    torch.set_num_threads(cfg.cpus_per_trial)
    point = cfg.points[config["point"]]

    def attempt(cls, wait):  # classes another process holds (a trial, or a fit in the fit cache) come last
        return _trial_or_deferred(view, cfg, point, cls, Path(trials_dir), wait=wait)

    aurocs = [record["dev_auroc_last"] for _, record in busy_last(attempt, cfg.classes)]
    tune.report({"mean_dev_auroc": sum(aurocs) / len(aurocs)})


def _run_ray(view: TrainOnly, cfg: SweepConfig, out: Path, trials_dir: Path) -> None:
    with ray_session(cfg.executor_config):
        try:
            from ray import tune
        except ImportError:
            raise ImportError(f"--executor ray needs Ray Tune: {RAY_INSTALL}") from None
        trainable = tune.with_resources(
            tune.with_parameters(_ray_trainable, view=view, cfg=cfg, trials_dir=str(trials_dir.resolve())),
            {"cpu": cfg.cpus_per_trial})
        storage = (out / "tune").resolve()
        path = storage / "sweep"
        if path.exists() and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(trainable, param_space={"point": tune.grid_search(list(range(len(cfg.points))))},
                               tune_config=tune.TuneConfig(),
                               run_config=tune.RunConfig(storage_path=str(storage), name="sweep", verbose=0))
        errors = tuner.fit().errors
        if errors:
            raise RuntimeError(f"{len(errors)} Ray trial(s) of the sweep failed; the first: {errors[0]!r}")


# --- the sweep --------------------------------------------------------------------------------------

def _check_out(out: Path, cfg: SweepConfig) -> None:
    """Refuse an OUT that holds another sweep (its trials would be judged with this one's)."""
    mine = json.loads(json.dumps(cfg.identity()))  # as JSON reads it back: grid order kept
    for name in ("config.json", "sweep.json"):
        path = out / name
        if not path.exists():
            continue
        try:
            theirs = json.loads(path.read_text())["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a noveltykit sweep file ({exc}); pick another --out") from None
        diff = [k for k in IDENTITY_FIELDS if json.dumps(theirs.get(k, IDENTITY_DEFAULTS.get(k))) != json.dumps(mine[k])]
        if diff:
            raise ValueError(f"{out} holds a sweep with another config (differs in {', '.join(diff)}); "
                             "pick another --out")


def _summaries(view: TrainOnly, cfg: SweepConfig, trials_dir: Path) -> list[dict]:
    out = []
    for point in cfg.points:
        records = [finished_trial(view, cfg, point, cls, trials_dir) for cls in cfg.classes]
        if None in records:
            raise RuntimeError(f"{point.label}: a trial is missing from {trials_dir} after the run")
        aurocs = [r["dev_auroc_last"] for r in records]
        out.append({"label": point.label, "params": point.changed, "aurocs": aurocs,
                    "dev_auroc": {str(c): a for c, a in zip(cfg.classes, aurocs)},
                    "mean": sum(aurocs) / len(aurocs), "min": min(aurocs),
                    "seconds": sum(r["seconds"] for r in records)})
    return out


def run_sweep(cfg: SweepConfig, dataset=None, progress: bool = True) -> dict:
    """Run (or resume) the sweep, choose by `cfg.rule`, write OUT/sweep.{json,md,png}; returns
    what sweep.json holds. Classes "all" are resolved here, once the data is read, and recorded
    as the list of classes they stand for."""
    out = Path(cfg.out)
    if cfg.classes != ALL_CLASSES:  # a wrong OUT fails before any data is read
        _check_out(out, cfg)
    if dataset is None:
        from ..data import load_dataset
        dataset = load_dataset(cfg.dataset, cfg.data_dir, progress=progress, size=cfg.image_size)
    view = TrainOnly(dataset)  # the only thing trials get
    if cfg.classes == ALL_CLASSES:  # the list it stands for, recorded as such: a copy, the caller's cfg unchanged
        cfg = copy.copy(cfg)
        cfg.classes = resolve_classes(view, ALL_CLASSES, "one-vs-rest")
        if not cfg.classes:
            raise ValueError(f"{view.name}: no class has training images to sweep on")
        _check_out(out, cfg)
    if view.train_x.shape[-1] != cfg.image_size:
        raise ValueError(f"{view.name}: images are {view.train_x.shape[-1]} px but image_size is {cfg.image_size}")
    for cls in cfg.classes:
        view.class_index(cls)  # out of range fails before any work
    atomic_write_json(out / "config.json", {"config": cfg.as_dict()})
    trials_dir = out / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    adopted = adopt_trials(view, cfg, trials_dir)
    if adopted and progress:  # say so: these trials' times are the other sweep's, not this run's
        print(f"sweep: adopted {adopted} finished trial(s) from {', '.join(cfg.reuse)}", file=sys.stderr)
    unfinished = any(finished_trial(view, cfg, p, c, trials_dir) is None for p in cfg.points for c in cfg.classes)
    if cfg.executor == "ray" and unfinished:  # all done already: no Ray start-up
        _run_ray(view, cfg, out, trials_dir)
    # serial; after Ray, only what its restored experiment thought done but OUT/trials lacks (a
    # deleted file): the same trial code either way
    _run_serial(view, cfg, trials_dir, progress and cfg.executor == "serial")

    summaries = _summaries(view, cfg, trials_dir)
    chosen = choose_by_rule(summaries, cfg.rule)
    result = {"format": "noveltykit-sweep", "config": cfg.as_dict(),
              "rule": {"name": cfg.rule, "doc": " ".join(RULES[cfg.rule].__doc__.split())},
              "data": {"name": view.name, "source": view.source, "split": SPLIT_NOTE,
                       "classes": {str(c): view.class_names[c] for c in cfg.classes}},
              "points": summaries, "chosen": {"index": chosen, "label": summaries[chosen]["label"],
                                              "params": summaries[chosen]["params"]},
              "provenance": {"versions": provenance.package_versions(), "git_commit": provenance.git_commit(),
                             "machine": provenance.machine()}}
    atomic_write_json(out / "sweep.json", result)
    atomic_write_bytes(out / "sweep.md", sweep_markdown(result).encode())
    atomic_write_bytes(out / "sweep.png", sweep_figure(result))
    return result


# --- reports ----------------------------------------------------------------------------------------

def sweep_markdown(result: dict) -> str:
    classes = list(result["data"]["classes"])
    rows = ["| point | " + " | ".join(f"class {c}" for c in classes) + " | mean | min |",
            "|---" * (len(classes) + 3) + "|"]
    for i, p in enumerate(result["points"]):
        cells = [f"`{p['label']}`", *(f"{p['dev_auroc'][c]:.4f}" for c in classes), f"{p['mean']:.4f}",
                 f"{p['min']:.4f}"]
        if i == result["chosen"]["index"]:
            cells = [f"**{c}**" for c in cells]
        rows.append("| " + " | ".join(cells) + " |")
    cfg, data = result["config"], result["data"]
    return (f"# Sweep: {cfg['method']} on {data['name']}\n\n" + "\n".join(rows) + "\n\n"
            f"Chosen: **`{result['chosen']['label']}`**, by the rule `{result['rule']['name']}` "
            f"({result['rule']['doc']}), fixed before the run, on dev AUROC: {data['split']}; "
            f"seed {cfg['seed']}, {cfg['image_size']} px, up to {cfg['n_novel']} novel images per class.\n")


def sweep_figure(result: dict) -> bytes:
    """PNG bytes: mean dev AUROC per grid point as bars, each class's as dots, the chosen bar dark."""
    plt = pyplot()

    points = result["points"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(points) + 2), 3.6))
    xs = range(len(points))
    ax.bar(xs, [p["mean"] for p in points], color=["C0" if i == result["chosen"]["index"] else "C7"
                                                   for i in xs], alpha=0.8, label="mean")
    for k, c in enumerate(result["data"]["classes"]):
        ax.plot(xs, [p["dev_auroc"][c] for p in points], "o", ms=4, color=f"C{k + 1}", label=f"class {c}")
    names = [",".join(f"{k}={v}" for k, v in p["params"].items()) for p in points]
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    lo = min(min(p["aurocs"]) for p in points)
    ax.set(ylabel="dev AUROC", ylim=(max(0.0, lo - 0.05), 1.01))
    # two lines and the legend beside the axes: a long incumbent spec must not run off the figure,
    # and no key may hide a dot
    ax.set_title(f"{result['config']['method']} on {result['data']['name']}\n"
                 f"(dev split; rule {result['rule']['name']})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
