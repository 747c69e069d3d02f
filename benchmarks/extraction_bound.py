"""Pretrained-feature extraction against the machine's matmul bound, every engine in one process.

The bound is the best of 5 fp32 4096x4096 matmuls (torch, the same threads); a Lite0 image costs
the FLOPs torch's FlopCounterMode counts for one image at that size (multiply-add = 2 FLOPs). Each
row: images/s of `FeatureExtractor` on cifar10-jpeg test images (each engine's own batch), and
that rate's share of the bound. Where the CPU computes bf16 natively, `precision="bf16"` rows too,
with the bf16 matmul bound beside. Rounds interleave the rows, the best round is kept.

    .venv/bin/python benchmarks/extraction_bound.py [--threads 2] [--images 256] [--rounds 3]
        [--sizes 224,128] [--out docs/results/extraction/bound.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from noveltykit.allocator import keep_freed_memory
from noveltykit.data import load_dataset
from noveltykit.experiments.provenance import cpu_model, machine
from noveltykit.features.extractor import FeatureExtractor, load_backbone
from noveltykit.hardware import native_bf16_cpu


def sgemm_gflops(n: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def gflop_per_image(size: int) -> float:
    net = load_backbone("efficientnet-lite0").eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="224,128")
    ap.add_argument("--out")
    args = ap.parse_args()
    keep_freed_memory()  # as every noveltykit command does
    torch.set_num_threads(args.threads)
    images = load_dataset("cifar10-jpeg", progress=False).test_x[:args.images]
    bound = sgemm_gflops()
    bf16_bound = sgemm_gflops(dtype=torch.bfloat16) if native_bf16_cpu() else None
    engines = ("torch", "onnxruntime") + (("torch-bf16",) if bf16_bound else ())
    rows = [(size, engine) for size in map(int, args.sizes.split(",")) for engine in engines]
    best = {row: 0.0 for row in rows}
    for _ in range(args.rounds):
        for size, engine in rows:
            extractor = (FeatureExtractor(size=size, precision="bf16") if engine == "torch-bf16"
                         else FeatureExtractor(size=size, engine=engine))
            extractor(images[:8])  # warm-up (and ONNX Runtime's one export)
            best[(size, engine)] = max(best[(size, engine)], len(images) / _timed(lambda: extractor(images)))
    flops = {size: gflop_per_image(size) for size in {s for s, _ in rows}}
    print(f"{cpu_model()}, {args.threads} threads, torch kernels {machine()['cpu_kernels']}; "
          f"fp32 matmul bound {bound:.1f} GFLOP/s" + (f", bf16 {bf16_bound:.1f}" if bf16_bound else ""))
    print("| size | engine | GFLOP an image | images/s | share of the fp32 bound | share of the bf16 bound |\n"
          "|---|---|---|---|---|---|")
    records = []
    for (size, engine), rate in best.items():
        share = rate * flops[size] / bound
        records.append({"size": size, "engine": engine, "gflop_per_image": flops[size], "images_per_s": rate,
                        "share_of_bound": share})
        bf16_share = f"{100 * rate * flops[size] / bf16_bound:.1f}%" if engine == "torch-bf16" else ""
        print(f"| {size} | {engine} | {flops[size]:.3f} | {rate:.1f} | {100 * share:.1f}% | {bf16_share} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"cpu": cpu_model(), "machine": machine(), "threads": args.threads,
                                              "bound_gflops": bound, "bf16_bound_gflops": bf16_bound, "images": args.images, "rows": records},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
