"""Training and scoring throughput of a GAN detector's networks on this machine.

Runs every variant in one process, interleaved, so the ratios between them are fair on a shared
machine. Usage: python benchmarks/gan_speed.py [--width 64] [--channels 1] [--batch 64]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from noveltykit.train.gan import GANConfig, build_networks, generator_losses
from noveltykit.experiments.provenance import cpu_model
from noveltykit.train.stabilisers import discriminator_bce


def train_steps(cfg: GANConfig, x: torch.Tensor, steps: int, bf16: bool, channels_last: bool) -> float:
    g, d = build_networks(cfg)
    if channels_last:
        g, d, x = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last), \
            x.contiguous(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    t0 = 0.0
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = g(x)
            lr_, fr = d(x)
            lf, ff = d(out.x_hat)
            lg = generator_losses(cfg, x, out, fr.float(), ff.float())
            ld = discriminator_bce(lr_.float(), lf.float())
        opt_g.zero_grad()
        opt_d.zero_grad()
        lg["g"].backward(inputs=list(g.parameters()), retain_graph=True)
        ld.backward(inputs=list(d.parameters()))
        opt_g.step()
        opt_d.step()
    return steps * len(x) / (time.perf_counter() - t0)


@torch.no_grad()
def score_rate(cfg: GANConfig, x: torch.Tensor, reps: int, bf16: bool) -> float:
    g, _ = build_networks(cfg)
    g.eval()
    g(x)
    t0 = time.perf_counter()
    for _ in range(reps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            g(x)
    return reps * len(x) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    variants = {
        "fp32 batchnorm": dict(norm="batch"),
        "fp32 instancenorm": dict(norm="instance"),
        "fp32 batchnorm channels_last": dict(norm="batch", channels_last=True),
        "bf16 autocast batchnorm": dict(norm="batch", bf16=True),
        "bf16 autocast instancenorm": dict(norm="instance", bf16=True),
    }
    x = torch.rand(args.batch, args.channels, 32, 32) * 2 - 1
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):  # interleaved rounds: load changes hit every variant alike
        for name, v in variants.items():
            cfg = GANConfig(width=args.width, channels=args.channels, norm=v["norm"], batch_size=args.batch)
            rates[name].append(train_steps(cfg, x, args.steps, v.get("bf16", False), v.get("channels_last", False)))
    base = max(rates["fp32 batchnorm"])
    print(f"CPU {cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()}, threads "
          f"{torch.get_num_threads()}, width {args.width}, channels {args.channels}, batch {args.batch}")
    print("| variant | train images/s (best of rounds) | ratio to fp32 batchnorm |")
    print("|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {max(r):.0f} | {max(r) / base:.2f} |")
    cfg = GANConfig(width=args.width, channels=args.channels, norm="batch")
    big = torch.rand(256, args.channels, 32, 32) * 2 - 1
    s32, s16 = score_rate(cfg, big, 5, False), score_rate(cfg, big, 5, True)
    print(f"\nscoring (eval, batch 256): fp32 {s32:.0f} img/s, bf16 autocast {s16:.0f} img/s ({s16 / s32:.2f}x)")
    print(json.dumps({"cpu": cpu_model(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
                      "train": rates, "score_fp32": s32, "score_bf16": s16}))


if __name__ == "__main__":
    main()
