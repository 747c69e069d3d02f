"""ONNX Runtime with two threads: one call on both threads against one single-threaded call per
thread at once (what `FeatureExtractor` does), on the same prepared cifar10-jpeg images, 4 images
a call; images/s, best of 4 rounds, and the largest difference between the two's features.

    .venv/bin/python benchmarks/onnx_threads.py [--sizes 128,224] [--images 256]
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from noveltykit.allocator import keep_freed_memory
from noveltykit.data import load_dataset
from noveltykit.data.images import to_float
from noveltykit.experiments.provenance import cpu_model
from noveltykit.features.extractor import ONNX_BATCH, FeatureExtractor, onnx_session


def rate(fn, n: int, rounds: int = 4) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,224")
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(2)
    images = load_dataset("cifar10-jpeg", progress=False).test_x[:args.images]
    print(f"{cpu_model()}, 2 threads, {ONNX_BATCH} images a call")
    print("| size | one call on 2 threads, images/s | 2 single-threaded calls at once | ratio | largest difference |\n"
          "|---|---|---|---|---|")
    pool = ThreadPoolExecutor(2)
    for size in map(int, args.sizes.split(",")):
        x = FeatureExtractor(size=size).prepare(to_float(images)).numpy()
        calls = [np.ascontiguousarray(x[i:i + ONNX_BATCH]) for i in range(0, len(x), ONNX_BATCH)]
        both = onnx_session("efficientnet-lite0", size, ("last",), ONNX_BATCH, 2)
        single = onnx_session("efficientnet-lite0", size, ("last",), ONNX_BATCH, 1)
        one_call = lambda: [both.run(None, {"images": c})[0] for c in calls]  # noqa: E731
        per_thread = lambda: list(pool.map(lambda c: single.run(None, {"images": c})[0], calls))  # noqa: E731
        a, b = rate(one_call, len(x)), rate(per_thread, len(x))
        gap = np.abs(np.concatenate(one_call()) - np.concatenate(per_thread())).max()
        print(f"| {size} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
