"""One method on one class and seed, its model saved: a one-cell benchmark (what `noveltykit
distill` runs for a student spec). The method is any spec; nothing here knows a family."""
from __future__ import annotations

from pathlib import Path

from ..detectors.specs import MethodSpec
from .bench import BenchConfig, run_benchmark


def run_one_cell(spec: MethodSpec, dataset: str, cls: int | str, out: str | Path, *, seed: int = 0,
                 protocol: str = "one-vs-rest", val_fraction: float = 0.1, device: str | None = None,
                 data_dir: str | None = None, curves: bool = False, command: str = "",
                 progress: bool = True) -> list[dict]:
    """Run (or resume) `spec` on class `cls`, seed `seed`, in the bench folder `out` with the model
    saved; returns that cell's record (a list: empty if it failed, and then BenchFailed is raised)."""
    cfg = BenchConfig(dataset=dataset, methods=[spec], protocol=protocol, classes=[cls], seeds=[seed],
                      val_fraction=val_fraction, out=str(out), data_dir=data_dir, curves=curves, save_models=True,
                      device=device, command=command)
    return [r for r in run_benchmark(cfg, progress=progress) if r["method"] == spec.label and r["seed"] == seed]
