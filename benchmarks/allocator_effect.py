"""What `noveltykit.allocator` (glibc told to keep freed memory, applied by every command) and the
ONNX Runtime feature engine change: `noveltykit score` with a `feat-knn` model (224 px features)
on N PNG files, run as a subprocess three ways in one run: eager torch with glibc's defaults
(NOVELTYKIT_MALLOPT=0), eager torch with the settings, ONNX Runtime with the settings
(NOVELTYKIT_FEATURE_ENGINE); wall, user and system seconds and minor page faults, the CPU named.

    .venv/bin/python benchmarks/allocator_effect.py [--n 2000] [--threads 2] [--out runs/allocator]

Images: the first N test images of cifar10-jpeg (in the data cache: `noveltykit data fetch
--dataset cifar10-jpeg`), written as 32 px PNGs; the model: feat-knn fitted on 200 training
images of class 0. Scores of the two runs must be identical (checked).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from noveltykit import detectors
from noveltykit.data import load_dataset
from noveltykit.experiments.provenance import cpu_model


def run_score(model: Path, images: Path, out: Path, env: dict) -> dict:
    return run_cli(["score", str(model), str(images), "--out", str(out), "--quiet"], env)


def run_cli(arguments: list[str], env: dict) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "noveltykit.cli", *arguments], env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "minor_faults": after.ru_minflt - before.ru_minflt}


def _largest_gap(out: Path) -> float:
    """The largest |onnxruntime - torch| score over the largest torch score, across the files."""
    read = lambda name: np.array([float(r.split(",")[1]) for r in (out / name).read_text().splitlines()[1:]])  # noqa: E731
    a, b = read("on.csv"), read("ort.csv")
    return float(np.abs(a - b).max() / np.abs(a).max())


def write_pngs(images, folder: Path):
    if not folder.is_dir() or len(list(folder.glob("*.png"))) != len(images):
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            Image.fromarray(np.moveaxis(img, 0, -1)).save(folder / f"{i:05d}.png")


def time_fits(ds, fit_class: int, out: Path, envs: dict[str, dict]) -> dict:
    """`noveltykit fit --method feat-knn` on class `fit_class`'s training images, each way."""
    train = out / f"train-class-{fit_class}"
    write_pngs(ds.train_x[ds.train_y == fit_class], train)
    rows = {}
    for i, (name, env) in enumerate(envs.items()):
        model = out / f"fit-{i}"
        if model.exists():
            import shutil
            shutil.rmtree(model)
        rows[name] = run_cli(["fit", "--method", "feat-knn", "--train", str(train), "--out", str(model), "--quiet"], env)
    print(f"noveltykit fit, feat-knn (224 px), cifar10-jpeg class {fit_class}: {len(list(train.glob('*.png')))} PNGs")
    print("| engine, allocator | wall s | user s | system s |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/allocator")
    parser.add_argument("--fit-class", type=int, help="also time feat-knn fits on this cifar10-jpeg class")
    args = parser.parse_args()
    out = Path(args.out)
    images = out / "images"
    ds = load_dataset("cifar10-jpeg", progress=False)
    write_pngs(ds.test_x[:args.n], images)
    model = out / "model"
    if not (model / "config.json").is_file():
        detectors.make("feat-knn").fit(ds.train_x[ds.train_y == 0][:200]).save(model)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        env.pop(key, None)
    torch_env = {**env, "NOVELTYKIT_FEATURE_ENGINE": "torch"}
    envs = {"torch, glibc defaults": {**torch_env, "NOVELTYKIT_MALLOPT": "0"},
            "torch, noveltykit.allocator": torch_env,
            "onnxruntime, noveltykit.allocator": {**env, "NOVELTYKIT_FEATURE_ENGINE": "onnxruntime"}}
    rows = {name: run_score(model, images, out / csv, envs[name]) for name, csv in zip(envs, ("off.csv", "on.csv", "ort.csv"))}
    fits = time_fits(ds, args.fit_class, out, envs) if args.fit_class is not None else None
    same = (out / "off.csv").read_text() == (out / "on.csv").read_text()
    print(f"noveltykit score, feat-knn (224 px), {args.n} PNGs, {args.threads} threads, {cpu_model()}; "
          f"torch runs' scores identical: {same}; onnxruntime's largest relative difference: {_largest_gap(out):.2g}")
    print("| engine, allocator | wall s | user s | system s | minor page faults | images/s |\n|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | {r['minor_faults']:,} | "
              f"{args.n / r['wall_s']:.1f} |")
    (out / "allocator.json").write_text(json.dumps({"n": args.n, "threads": args.threads, "cpu": cpu_model(),
                                                    "identical_scores": same, "onnxruntime_gap": _largest_gap(out),
                                                    "runs": rows, "fits": fits}, indent=2))
    if not same:
        sys.exit("the two runs' scores differ")


if __name__ == "__main__":
    main()
