"""The tech report's linear GAN (A.5) as an experiment: train it on Gaussian data, file the run and its curves."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ..analysis.plots import plot_linear_gan
from ..fileio import atomic_write_json
from ..train.linear_gan import LinearGANConfig, d_g_convergence, gaussian_data, train_linear_gan

DEFAULT_EIGENVALUES = (4.0, 2.0, 1.0, 0.8, 0.6, 0.5)


def run_linear_gan(out: str | Path, *, m: int = 8, c: int = 2, n: int = 2000,
                   eigenvalues: Sequence[float | str] = DEFAULT_EIGENVALUES, steps: int = 1000,
                   lr_d: float = 0.5, lr_g: float = 0.5, k: int = 1, seed: int = 0, command: str = "") -> dict:
    """Train G(z) = Bz against D(y) = sigmoid(Ay) on `n` zero-mean Gaussian points in `m` dimensions
    whose covariance has `eigenvalues` (the last repeats up to m); write OUT/linear-gan.json (the
    returned record: config, data, convergence of D on generated points to 1/2, angles, final
    values, history, `command`) and OUT/linear-gan.png (the curves)."""
    cfg = LinearGANConfig(m=m, c=c, steps=steps, lr_d=lr_d, lr_g=lr_g, k=k, seed=seed)
    eigenvalues = tuple(float(v) for v in eigenvalues)
    result = train_linear_gan(gaussian_data(m, n, eigenvalues, seed), cfg)
    record = {"config": asdict(cfg), "data": {"n": n, "eigenvalues": eigenvalues, "seed": seed},
              "convergence": d_g_convergence(result), "angles_degrees": result.angles,
              "final": {key: v[-1] for key, v in result.history.items()}, "history": result.history,
              "command": command}
    out = Path(out)
    plot_linear_gan(out / "linear-gan.png", result.history, f"linear GAN m={cfg.m} c={cfg.c} seed {cfg.seed}")
    atomic_write_json(out / "linear-gan.json", record)
    return record
