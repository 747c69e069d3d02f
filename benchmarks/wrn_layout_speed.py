"""How fast `selfsup`'s network runs on this CPU, by input memory layout and scoring batch size:
images a second of WRN forward passes (eval, scoring) and forward + backward passes (training),
contiguous (NCHW) input against channels-last, in one process, rounds interleaved so that a
neighbour's load falls on every variant alike. Reports medians and the ratios to the contiguous
layout; the CPU is printed with them.

    OMP_NUM_THREADS=1 python benchmarks/wrn_layout_speed.py --rounds 4

The weights stay in the default layout in every variant (as `nets.wrn` keeps them).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from noveltykit.experiments.provenance import machine
from noveltykit.nets.wrn import WideResNet


def rate(net: WideResNet, batch: int, channels_last: bool, train: bool, reps: int, size: int, channels: int) -> float:
    """Images a second over `reps` passes, after one warm-up pass."""
    net.channels_last = channels_last
    net.train(train)
    x = torch.randn(batch, channels, size, size)

    def step():
        if train:
            sum(z.sum() for z in net(x)).backward()
        else:
            with torch.inference_mode():
                net(x)
    step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return batch * reps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = WideResNet(args.channels, (72,), args.depth, args.widen)
    cases = {f"{what} batch {b}, {'channels-last' if cl else 'contiguous'}": (b, cl, what == "train", reps)
             for what, b, reps in (("score", 128, 4), ("score", 512, 1), ("train", 64, 6)) for cl in (False, True)}
    seen = {k: [] for k in cases}
    for _ in range(args.rounds):
        for k, (b, cl, train, reps) in cases.items():
            seen[k].append(rate(net, b, cl, train, reps, args.size, args.channels))
    medians = {k: statistics.median(v) for k, v in seen.items()}
    base = {"score": medians["score batch 512, contiguous"], "train": medians["train batch 64, contiguous"]}
    rows = {k: {"images_per_s": round(v), "ratio": round(v / base[k.split()[0]], 2)} for k, v in medians.items()}
    print(json.dumps({"net": f"WRN-{args.depth}-{args.widen}", "image": [args.channels, args.size, args.size],
                      "threads": torch.get_num_threads(), "rounds": args.rounds, "machine": machine(),
                      "ratio_to": "the contiguous layout at the scoring batch of 512 (score) or at 64 (train)",
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
