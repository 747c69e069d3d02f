"""Pretrained-feature extraction throughput (images/s) at each input size, on real images.

All sizes run in one process, in interleaved rounds, so their ratios are fair on a shared machine.
Usage: python benchmarks/feature_speed.py [--dataset cifar10-jpeg] [--sizes 64,128,224]
  [--threads 2] [--images 512] [--out docs/results/feature-speed.jsonl]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from noveltykit.data import load_dataset
from noveltykit.experiments.provenance import cpu_model
from noveltykit.features import FeatureExtractor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="cifar10-jpeg")
    ap.add_argument("--sizes", default="64,128,224")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, help="images per network call (default: the extractor's)")
    ap.add_argument("--out", help="append the results as one JSON line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = load_dataset(args.dataset).test_x[: args.images]
    extractors = {int(s): FeatureExtractor(size=int(s), batch_size=args.batch_size) for s in args.sizes.split(",")}
    for ex in extractors.values():
        ex(images[:16])  # load the network, warm the kernels
    best = {s: 0.0 for s in extractors}
    for _ in range(args.rounds):
        for s, ex in extractors.items():
            t0 = time.perf_counter()
            ex(images)
            best[s] = max(best[s], len(images) / (time.perf_counter() - t0))
    print(f"{args.dataset}, {len(images)} images, {args.threads} threads, best of {args.rounds} interleaved rounds; "
          f"CPU {cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()}")
    print("| size | images/s | ratio to the largest size |")
    print("|---|---|---|")
    largest = max(best)
    for s in sorted(best):
        print(f"| {s} | {best[s]:.0f} | {best[s] / best[largest]:.2f}x |")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"cpu": cpu_model(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
                                "dataset": args.dataset, "images": len(images), "threads": args.threads,
                                "torch": torch.__version__, "images_per_s": best}) + "\n")


if __name__ == "__main__":
    main()
