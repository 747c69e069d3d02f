"""How fast `noveltykit score` goes through a folder of image files (docs/use.md).

    OMP_NUM_THREADS=1 python benchmarks/score_folder_speed.py --method knn --n 10000 --work /tmp/score-speed

Writes the Fashion-MNIST sneakers of the training set as PNG files (the normal folder) and the
first N test images as PNG files (the folder to score), fits `--method` with `noveltykit fit`, and
times `noveltykit score` on the folder, end to end: listing, decoding, resizing, scoring, writing
the CSV. Prints one JSON line with the rate and the CPU it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from PIL import Image

from noveltykit.cli import main
from noveltykit.data import load_dataset


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def write(images, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im[0]).save(folder / f"{i:05d}.png")


def run():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="knn")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--work", default="/tmp/score-speed")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    ds = load_dataset("fashion-mnist", progress=False)
    write(ds.train_x[ds.train_y == 7], work / "normal")
    write(ds.test_x[: args.n], work / "new")
    assert main(["fit", "--method", args.method, "--train", str(work / "normal"), "--out", str(work / "model"),
                 "--quiet"]) == 0
    t0 = time.perf_counter()
    assert main(["score", str(work / "model"), str(work / "new"), "--out", str(work / "scores.csv")]) == 0
    seconds = time.perf_counter() - t0
    print(json.dumps({"method": args.method, "files": args.n, "seconds": round(seconds, 2),
                      "images_per_s": round(args.n / seconds, 1), "cpu": cpu_name(),
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "n_normal": int((ds.train_y == 7).sum())}))


if __name__ == "__main__":
    run()
