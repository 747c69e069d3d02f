"""Monitors for the GAN pathologies of the tech report, each fired at the step it is seen:

- `collapse` (Fig. 3.1): the generated images of a batch all alike: their variance across the
  batch (mean over pixels) below `collapse_below` times that of the real batch beside them (a
  relative test, so data that vary little are not taken for a collapse);
- `explosion` (Fig. A.6): the opposite, that variance above `explode_above` (the generator's tanh
  bounds pixels to [-1, 1], so a variance near 1 means pixels thrown to the bounds at random);
- `nonfinite`: a loss that is NaN or inf;
- `stuck` (Fig. 3.3): the discriminator's accuracy on its batch (real and fake together) within
  `stuck_band` of 50% for `stuck_steps` steps in a row: it no longer tells them apart.

They watch from step `watch_after` on: at initialisation a generator's outputs are all near one
image, which is where training starts, not a pathology.

The unit that trains collects one row of statistics a step as tensors and hands them over every
few steps (one host sync), so watching costs no sync a step. What to do when one fires is
`on_pathology`: `warn` (a warning, and the event in the history), `stop` (a clear error; the
training loop names the last good checkpoint), or `reinit-d` (start the discriminator afresh).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .stabilisers import TrainingDiverged

ACTIONS = ("warn", "stop", "reinit-d")
STATS = ("loss_g", "loss_d", "fake_var", "real_var", "d_acc")  # one row a step, in this order


@dataclass
class PathologyFields:
    """The fields an adversarial training config mixes in to watch for pathologies."""

    on_pathology: str = "warn"  # warn | stop | reinit-d
    # an untrained generator's outputs are all near one image: not a pathology yet, so the
    # monitors start watching after this many steps
    watch_after: int = 50
    collapse_below: float = 0.01  # relative to the real batch's variance
    explode_above: float = 0.9
    stuck_band: float = 0.02
    stuck_steps: int = 200


class PathologyStop(TrainingDiverged):
    """A pathology fired under `on_pathology="stop"`."""


def batch_variance(images: torch.Tensor) -> torch.Tensor:
    """Variance across the batch of each pixel, averaged over pixels (0 when all images agree)."""
    return images.float().var(0, unbiased=False).mean()


def discriminator_accuracy(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Share of the batch's real and fake images that D puts on the right side of 1/2."""
    right = torch.cat([(logit_real > 0), (logit_fake <= 0)])
    return right.float().mean()


class PathologyMonitor:
    def __init__(self, cfg: PathologyFields):
        if cfg.on_pathology not in ACTIONS:
            raise ValueError(f"on_pathology must be one of {ACTIONS}, got {cfg.on_pathology!r}")
        if not (0 <= cfg.collapse_below < 1 and 0 < cfg.explode_above and 0 < cfg.stuck_band < 0.5 and cfg.stuck_steps >= 1
                and cfg.watch_after >= 0):
            raise ValueError("need 0 <= collapse_below < 1, explode_above > 0, 0 < stuck_band < 0.5, stuck_steps >= 1, "
                             f"watch_after >= 0; got {cfg.collapse_below}, {cfg.explode_above}, {cfg.stuck_band}, "
                             f"{cfg.stuck_steps}, {cfg.watch_after}")
        self.cfg = cfg
        self.events: list[dict] = []  # {"monitor", "step", "value"}, in the order they fired
        self.stuck_run = 0  # steps in a row with D near 50%
        self.firing: set[str] = set()  # monitors whose condition held at the last step (fire once per episode)

    def check(self, first_step: int, rows: torch.Tensor) -> list[dict]:
        """Statistics of consecutive steps (rows of STATS, from `first_step` on); returns the new
        events. A condition that holds over many steps fires once, when it starts."""
        new = []
        for offset, (loss_g, loss_d, fake_var, real_var, d_acc) in enumerate(rows.tolist()):
            step = first_step + offset
            if step < self.cfg.watch_after:
                continue
            near_half = abs(d_acc - 0.5) <= self.cfg.stuck_band
            self.stuck_run = self.stuck_run + 1 if near_half else 0
            now = {"nonfinite": not (math.isfinite(loss_g) and math.isfinite(loss_d)),
                   "collapse": fake_var < self.cfg.collapse_below * real_var,
                   "explosion": fake_var > self.cfg.explode_above,
                   "stuck": self.stuck_run >= self.cfg.stuck_steps}
            values = {"nonfinite": loss_g if not math.isfinite(loss_g) else loss_d, "collapse": fake_var,
                      "explosion": fake_var, "stuck": d_acc}
            for name, holds in now.items():
                if holds and name not in self.firing:
                    new.append({"monitor": name, "step": step, "value": values[name]})
            self.firing = {name for name, holds in now.items() if holds}
        self.events += new
        return new

    def act(self, events: list[dict], reinit_d) -> None:
        """Carry out `on_pathology` for newly fired events; `reinit_d()` restarts the discriminator."""
        if not events:
            return
        text = "; ".join(f"{e['monitor']} at step {e['step']} (value {e['value']:.4g})" for e in events)
        if self.cfg.on_pathology == "stop":
            raise PathologyStop(f"GAN pathology: {text} (on_pathology='stop')")
        if self.cfg.on_pathology == "reinit-d":
            reinit_d()
        warnings.warn(f"GAN pathology: {text}", RuntimeWarning, stacklevel=2)

    def state(self) -> dict:
        return {"events": list(self.events), "stuck_run": self.stuck_run, "firing": sorted(self.firing)}

    def load_state(self, state: dict) -> None:
        self.events, self.stuck_run = list(state["events"]), int(state["stuck_run"])
        self.firing = set(state["firing"])


TRACE_COLUMNS = ("step", *STATS, "lr_g", "lr_d")


class StepWatch:
    """An adversarial unit's per-step statistics: kept as tensors while training (no host sync a
    step), checked by the monitor and appended to the trace (the per-step curves) at each sync."""

    def __init__(self, cfg: PathologyFields):
        self.monitor = PathologyMonitor(cfg)
        self.steps = 0
        self.pending: list[torch.Tensor] = []
        self.pending_rates: list[tuple[float, float]] = []
        self.trace: list[list[float]] = []  # per step: STATS, lr_g, lr_d

    def record(self, loss_g: torch.Tensor, loss_d: torch.Tensor, fakes: torch.Tensor, reals: torch.Tensor,
               logit_real: torch.Tensor, logit_fake: torch.Tensor, rates: tuple[float, float]) -> None:
        self.pending.append(torch.stack([loss_g.detach().float(), loss_d.detach().float(),
                                         batch_variance(fakes.detach()), batch_variance(reals),
                                         discriminator_accuracy(logit_real.detach(), logit_fake.detach())]))
        self.pending_rates.append(rates)
        self.steps += 1

    def flush(self, reinit_d) -> None:
        """Check the steps since the last flush; carry out `on_pathology` for what fired."""
        if not self.pending:
            return
        rows = torch.stack(self.pending).cpu()
        first = self.steps - len(self.pending)
        self.trace += [row + list(rates) for row, rates in zip(rows.tolist(), self.pending_rates)]
        self.pending, self.pending_rates = [], []
        self.monitor.act(self.monitor.check(first, rows), reinit_d)

    @property
    def events(self) -> list[dict]:
        return self.monitor.events

    def columns(self) -> dict[str, list[float]]:
        """The trace as columns (what a results file stores)."""
        rows = self.trace
        return {"step": list(range(len(rows))),
                **{name: [row[j] for row in rows] for j, name in enumerate(TRACE_COLUMNS[1:])}}

    def state(self) -> dict:
        return {"steps": self.steps, "trace": self.trace, "monitor": self.monitor.state()}

    def load_state(self, state: dict) -> None:
        self.steps, self.trace = int(state["steps"]), [list(r) for r in state["trace"]]
        self.pending, self.pending_rates = [], []
        self.monitor.load_state(state["monitor"])
