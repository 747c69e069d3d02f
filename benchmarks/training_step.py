"""EfficientNet-Lite0 training steps (forward + backward + SGD step) by layout, precision and frozen
blocks, against the machine's matmul bounds measured in the same run.

The fine-tuned detectors train this backbone; this says which layout and precision to train it in
on the CPU at hand. Each row: images/s of a full step on random images (batch `--batch`), the FLOPs
of one image's step (the forward pass, plus twice the forward FLOPs of the trained layers: frozen
blocks cost a forward only), and that rate's share of the fp32 bound (and of the bf16 bound, where the
CPU computes bf16 natively; elsewhere bf16 rows are skipped: emulated bf16 is many times slower,
train/precision.py). BatchNorm of trained blocks runs in training mode, frozen blocks in eval
mode. Rounds interleave the rows; the best round is kept.

    .venv/bin/python benchmarks/training_step.py [--threads 2] [--size 128] [--batch 32]
        [--frozen 0,6] [--rounds 3] [--steps 4] [--out docs/results/extraction/training_step.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from extraction_bound import sgemm_gflops  # the same bound, measured the same way (this folder is on the path)

from noveltykit.allocator import keep_freed_memory
from noveltykit.experiments.provenance import cpu_model, machine
from noveltykit.features.extractor import load_backbone
from noveltykit.hardware import native_bf16_cpu


class Trainee(torch.nn.Module):
    """Lite0 up to its pooled head, the first `frozen` blocks (and the stem) without gradient."""

    def __init__(self, frozen: int):
        super().__init__()
        import copy
        self.net = copy.deepcopy(load_backbone("efficientnet-lite0")).requires_grad_(True)
        self.frozen = frozen
        if frozen:
            for module in (self.net._conv_stem, self.net._bn0, *self.net._blocks[:frozen]):
                module.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # frozen BatchNorm keeps its ImageNet statistics
            for module in (self.net._bn0, *self.net._blocks[:self.frozen]):
                module.eval()
        return self

    def forward(self, x):
        return self.net.stage_maps(x, ["last"])["last"].mean(dim=(2, 3))


def make_step(frozen: int, channels_last: bool, bf16: bool):
    model = Trainee(frozen).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step(x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x).float().pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return step


def step_gflop(frozen: int, size: int) -> float:
    """FLOPs of one image's step: the forward pass, plus twice the forward FLOPs of the trained
    layers (gradients of their inputs and of their weights). Counted from forward passes: torch's
    counter overcounts grouped (depthwise) convolutions' backward as if they were dense."""
    net = load_backbone("efficientnet-lite0")
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as total:
        net.stage_maps(x, ["last"])
    with torch.no_grad(), FlopCounterMode(display=False) as prefix:  # the frozen stem and blocks
        h = torch.nn.functional.relu6(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:frozen]:
            h = block(h)
    trained = total.get_total_flops() - (prefix.get_total_flops() if frozen else 0)
    return (total.get_total_flops() + 2 * trained) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frozen", default="0,6", help="blocks frozen (of 16), comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps a round")
    ap.add_argument("--out")
    args = ap.parse_args()
    keep_freed_memory()  # as every noveltykit command does
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    native = native_bf16_cpu()
    bounds = {"fp32": sgemm_gflops()}
    if native:
        bounds["bf16"] = sgemm_gflops(dtype=torch.bfloat16)
    rows = [(frozen, layout, precision) for frozen in map(int, args.frozen.split(","))
            for layout in ("contiguous", "channels_last") for precision in bounds]
    steps = {row: make_step(row[0], row[1] == "channels_last", row[2] == "bf16") for row in rows}
    x = torch.randn(args.batch, 3, args.size, args.size)
    inputs = {"contiguous": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    best = dict.fromkeys(rows, 0.0)
    for row in rows:
        steps[row](inputs[row[1]])  # warm-up: first-call allocations and kernel choices
    for _ in range(args.rounds):
        for row in rows:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[row](inputs[row[1]])
            best[row] = max(best[row], args.steps * args.batch / (time.perf_counter() - t0))
    flops = {frozen: step_gflop(frozen, args.size) for frozen, _, _ in rows}
    print(f"{cpu_model()}, {args.threads} threads, torch kernels {machine()['cpu_kernels']}, native bf16 {native}; "
          + ", ".join(f"{k} matmul bound {v:.1f} GFLOP/s" for k, v in bounds.items()))
    print(f"Lite0 training step at {args.size} px, batch {args.batch}")
    print("| blocks frozen | layout | precision | GFLOP an image | images/s | share of the fp32 bound | "
          "share of its precision's bound |\n|---|---|---|---|---|---|---|")
    records = []
    for (frozen, layout, precision), rate in best.items():
        gflops = rate * flops[frozen]
        records.append({"frozen_blocks": frozen, "layout": layout, "precision": precision,
                        "gflop_per_image": flops[frozen], "images_per_s": rate,
                        "share_of_fp32_bound": gflops / bounds["fp32"],
                        "share_of_own_bound": gflops / bounds[precision]})
        print(f"| {frozen} | {layout} | {precision} | {flops[frozen]:.3f} | {rate:.1f} | "
              f"{100 * gflops / bounds['fp32']:.1f}% | {100 * gflops / bounds[precision]:.1f}% |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"cpu": cpu_model(), "machine": machine(), "threads": args.threads,
                                              "size": args.size, "batch": args.batch, "bounds_gflops": bounds,
                                              "rows": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
