"""Fit and scoring speed of the map detectors (patchcore, padim) at their default parameters.

Real images at the network's size: CIFAR-10 test images (cifar10-jpeg), upscaled to `--size`
(bilinear), so the maps come at that size too. `fit(X)` on `--images` of them (it holds out its own
10% for the two thresholds: part of the fit), then `decision_function` and `anomaly_map` on as
many others. One process, `--threads` threads (torch, BLAS and OpenMP), wall seconds.
Usage: python benchmarks/map_speed.py [--images 200] [--size 224] [--threads 1] [--only patchcore]
"""
from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy and torch
    os.environ.setdefault(_var, sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import noveltykit.detectors as nd  # noqa: E402
from noveltykit.data import load_dataset  # noqa: E402
from noveltykit.experiments.provenance import cpu_model  # noqa: E402


def upscaled(images, size: int):
    x = torch.from_numpy(images).float()
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", default=["patchcore", "padim"])
    ap.add_argument("--out", help="append the results as one JSON line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("cifar10-jpeg", allow_fetch=False, progress=False)
    train = upscaled(ds.test_x[:args.images], args.size)
    test = upscaled(ds.test_x[args.images:2 * args.images], args.size)
    results = {}
    for name in args.only:
        det = nd.make(name, size=args.size)
        t0 = time.perf_counter()
        det.fit(train)
        t1 = time.perf_counter()
        det.decision_function(test)
        t2 = time.perf_counter()
        det.anomaly_map(test)
        t3 = time.perf_counter()
        results[name] = r = {"fit_s": round(t1 - t0, 2), "score_images_per_s": round(len(test) / (t2 - t1), 1),
                             "map_images_per_s": round(len(test) / (t3 - t2), 1), **{
                                 k: round(v, 2) if isinstance(v, float) else v for k, v in det.fit_report().items()}}
        print(f"{name}: {r}", flush=True)
    print(f"{args.images} images to fit (10% held out), {args.images} to score, {args.size} px, {args.threads} "
          f"thread(s); CPU {cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()}")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"cpu": cpu_model(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
                                "images": args.images, "size": args.size, "threads": args.threads,
                                "torch": torch.__version__, "results": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
