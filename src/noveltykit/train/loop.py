"""The one training loop of every trained detector: epochs, batches, checkpoints, selection.

A trainable unit (a GAN, a distillation pair, an autoencoder, ...) owns its networks, optimisers
and losses; this loop owns everything around them:

    for each epoch:       seeded data order from (seed, epoch) alone, so a resume sees the same batches
      for each batch:     unit.step(x) -> its loss terms; every 25 steps a NaN/inf check and unit.sync
      unit.end_epoch:     validation loss on normal validation images (+ the unit's own numbers)
      monitor:            diagnostic numbers only; a key that collides with the record is an error
      checkpoint:         everything needed to continue exactly; a run under another config is refused
      early stop:         optional, on the validation loss (patience, min_delta)
    selection:            "last" epoch, or "val": the epoch with the lowest validation loss
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from tqdm import tqdm

from .checkpoint import CheckpointDir
from .stabilisers import TrainingDiverged

SYNC_EVERY = 25  # steps between host syncs (NaN check, the unit's own checks): not every step
LOOP_FORMAT = 1  # part of every checkpoint's config: checkpoints of an older loop are refused


class TrainableUnit(Protocol):
    loss_names: tuple[str, ...]  # what `step` returns, in order; averaged per epoch into the history

    def begin_epoch(self, epoch: int) -> dict:
        """Set train/eval modes for this epoch; return fields for its record (e.g. the structure)."""

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Train on one batch; return its detached loss terms, shape (len(loss_names),)."""

    def sync(self, losses: torch.Tensor) -> None:
        """Every SYNC_EVERY steps, with the last batch's losses (e.g. re-initialise a collapsed D)."""

    def end_epoch(self, x_val: torch.Tensor) -> dict:
        """The epoch's `val_loss` on normal validation images, and any other numbers of the unit."""

    def scoring_module(self) -> torch.nn.Module:
        """The module that scores (a moving average where there is one): what selection keeps."""

    def state(self) -> dict:
        """Everything a resume needs (weights, optimiser moments, counters)."""

    def load_state(self, state: dict) -> None: ...


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    seed: int = 0
    select: str = "last"  # "last" epoch, or "val": lowest normal-validation loss
    patience: int = 0  # 0 = train every epoch; else stop after this many epochs without improvement
    min_delta: float = 0.0  # how much lower a validation loss must be to count as an improvement

    def __post_init__(self):
        if self.select not in ("last", "val"):
            raise ValueError(f"select must be 'last' or 'val', got {self.select!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError(f"patience and min_delta must be >= 0, got {self.patience}, {self.min_delta}")


@dataclass
class LoopResult:
    history: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    stopped_early: bool = False


def epoch_order(seed: int, n: int, epoch: int) -> torch.Tensor:
    """Data order from (seed, epoch) alone, so a resumed run sees exactly the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def check_finite(sums: torch.Tensor, epoch: int, step: int, latest) -> None:
    """Stop on a NaN/inf loss, naming the last good checkpoint (a sync: call it now and then)."""
    if not torch.isfinite(sums).all():
        where = latest or "none (no checkpoint folder)"
        raise TrainingDiverged(f"non-finite loss in epoch {epoch + 1} near step {step}; last good "
                               f"checkpoint: {where}. Try a lower lr, grad_clip or prob_eps.")


Monitor = Callable[[int, torch.nn.Module], dict]


def train_loop(unit: TrainableUnit, cfg: LoopConfig, x_train: torch.Tensor, x_val: torch.Tensor, *,
               config: dict, checkpoint_dir: str | Path | None = None, resume: bool = False,
               progress: bool = False, monitor: Monitor | None = None, name: str = "epoch",
               y_train: torch.Tensor | None = None) -> LoopResult:
    """Train `unit` on `x_train` (already on the unit's device); `config` identifies the run in its
    checkpoints. `monitor(epoch, scoring_module)` may add diagnostic numbers to each record.
    With `y_train` (labels of the training images) each step gets its batch's labels too."""
    ckpt = CheckpointDir(checkpoint_dir) if checkpoint_dir else None
    config = {"loop": LOOP_FORMAT, **config}
    history: list[dict] = []
    best: tuple[float, int, dict] | None = None  # (val loss, epoch, scoring module state)
    # early stopping: the validation loss to beat by min_delta, and the epoch that last did
    patience = {"reference": float("inf"), "epoch": -1, "stopped": False}
    start = 0
    if resume and ckpt and (state := ckpt.latest()) is not None:
        if state["config"] != config:
            raise ValueError(f"{checkpoint_dir} holds a run with another configuration; "
                             "use another checkpoint folder or drop --resume")
        unit.load_state(state["unit"])
        history, start, patience = state["history"], state["epoch"] + 1, state["patience"]
        # an earlier process trained these epochs: a record's fit time then covers only the rest
        history = [{**record, "from_checkpoint": True} for record in history]
        best = (state["best"]["val_loss"], state["best"]["epoch"], state["best"]["module"])

    n, bs, dev = len(x_train), cfg.batch_size, x_train.device
    for epoch in range(start, 0 if patience["stopped"] else cfg.epochs):
        head = unit.begin_epoch(epoch)
        t0 = time.perf_counter()
        order = epoch_order(cfg.seed, n, epoch).to(dev)
        sums = torch.zeros(len(unit.loss_names), device=dev)
        steps = 0
        label = f"{head['structure']} epoch" if "structure" in head else name
        for i in tqdm(range(0, n, bs), desc=f"{label} {epoch + 1}/{cfg.epochs}", leave=False,
                      disable=not progress, unit="batch"):
            batch = order[i:i + bs]
            losses = unit.step(x_train[batch]) if y_train is None else unit.step(x_train[batch], y_train[batch])
            sums += losses
            steps += 1
            if steps % SYNC_EVERY == 0 or i + bs >= n:
                latest = ckpt and ckpt.root / "latest.json"
                try:  # the unit's own checks first (a pathology monitor logs a NaN before the guard stops)
                    unit.sync(losses)
                except TrainingDiverged as err:
                    raise type(err)(f"{err}; last good checkpoint: {latest or 'none (no checkpoint folder)'}") from err
                check_finite(sums, epoch, steps, latest)
        means = dict(zip(unit.loss_names, (sums / max(steps, 1)).tolist()))
        seconds = time.perf_counter() - t0  # training time: the validation pass is not in it
        tail = unit.end_epoch(x_val)
        record = {"epoch": epoch, **head, **means, **tail, "seconds": seconds, "images_per_s": n / seconds}
        if monitor is not None:
            extra = monitor(epoch, unit.scoring_module())
            if clash := sorted(set(extra) & set(record)):
                raise ValueError(f"the diagnostic monitor returned {clash}, which the training record "
                                 "(and selection) already uses; name diagnostics apart")
            record.update(extra)
        history.append(record)
        if best is None or record["val_loss"] < best[0]:
            best = (record["val_loss"], epoch, copy.deepcopy(unit.scoring_module().state_dict()))
        if record["val_loss"] < patience["reference"] - cfg.min_delta:
            patience.update(reference=record["val_loss"], epoch=epoch)
        patience["stopped"] = bool(cfg.patience) and epoch - patience["epoch"] >= cfg.patience
        if progress:
            shown = ", ".join(f"{k} {record[k]:.4f}" for k in unit.loss_names[:2])
            tqdm.write(f"{label} {epoch + 1}/{cfg.epochs}: {shown}, val {record['val_loss']:.4f} "
                       f"({record['images_per_s']:.0f} img/s)")
        if ckpt:
            ckpt.save(epoch, {"config": config, "epoch": epoch, "history": history, "unit": unit.state(),
                              "patience": patience,
                              "best": {"val_loss": best[0], "epoch": best[1], "module": best[2]}})
        if patience["stopped"]:
            break

    selected = history[-1]["epoch"] if history else 0
    if cfg.select == "val" and best is not None:
        unit.scoring_module().load_state_dict(best[2])
        selected = best[1]
    unit.scoring_module().eval()
    return LoopResult(history, selected, patience["stopped"])
