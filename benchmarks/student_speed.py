"""Scoring throughput of the EDE-GAN teacher and its students, eager PyTorch and ONNX Runtime.

Every (width, engine, batch) runs in one process, in interleaved rounds, so the ratios to the
teacher are fair on a shared machine; weights are random (speed does not depend on them). The
graph is the detector's own scoring module (generator + latent error), as `noveltykit export`
writes it. Usage: python benchmarks/student_speed.py [--channels 1] [--widths 64,8,2,1]
  [--threads 2] [--out docs/results/student-speed.jsonl]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from noveltykit.apply.export import export_module
from noveltykit.experiments.provenance import cpu_model
from noveltykit.nets.dcgan import Generator
from noveltykit.nets.profile import count_macs, count_params
from noveltykit.train.gan import ScoreModule


def rate(run, x, seconds: float) -> float:
    """Images/s of `run(x)`, repeated for about `seconds` after one warm-up call."""
    run(x)
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        run(x)
        n += 1
    return n * len(x) / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--widths", default="64,8,2,1")
    ap.add_argument("--norm", default="instance", help="the default preset's normalisation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    ap.add_argument("--out", help="append the results as one JSON line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    shape = (args.channels, 32, 32)
    runners, sizes = {}, {}
    tmp = Path(tempfile.mkdtemp())
    for u in widths:
        g = Generator(args.channels, u, norm=args.norm).eval()
        module = ScoreModule(g, "latent")
        sizes[u] = {"params": count_params(g), "macs": count_macs(g, shape)}
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(export_module(module, shape, tmp / f"u{u}.onnx")), options,
                                       providers=["CPUExecutionProvider"])

        def eager(x, m=module):
            with torch.inference_mode():
                return m(torch.from_numpy(x))

        runners[u] = {"eager": eager, "onnxruntime": lambda x, s=session: s.run(None, {"images": x})[0]}
    batches = {b: (torch.rand(b, *shape) * 2 - 1).numpy() for b in (256, 1)}
    best: dict[tuple, float] = {}
    for _ in range(args.rounds):  # interleaved: a change of load hits every cell alike
        for u in widths:
            for engine, run in runners[u].items():
                for b, x in batches.items():
                    r = rate(run, x, args.seconds)
                    best[(u, engine, b)] = max(best.get((u, engine, b), 0.0), r)
    teacher = widths[0]
    print(f"CPU {cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()}")
    print(f"channels {args.channels}, norm {args.norm}, {args.threads} threads; images/s, best of "
          f"{args.rounds} interleaved rounds; ratio = to the u={teacher} teacher, eager, same batch")
    print("| u | params | MACs | engine | batch 256 | ratio | batch 1 | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for u in widths:
        for engine in ("eager", "onnxruntime"):
            r256, r1 = best[(u, engine, 256)], best[(u, engine, 1)]
            b256, b1 = best[(teacher, "eager", 256)], best[(teacher, "eager", 1)]
            print(f"| {u} | {sizes[u]['params'] / 1e6:.4f}M | {sizes[u]['macs'] / 1e6:.3f}M | {engine} | "
                  f"{r256:.0f} | {r256 / b256:.1f}x | {r1:.0f} | {r1 / b1:.1f}x |")
            rows.append({"width": u, "engine": engine, "batch256": r256, "batch1": r1, **sizes[u]})
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"cpu": cpu_model(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
                                "channels": args.channels, "norm": args.norm, "threads": args.threads,
                                "torch": torch.__version__, "onnxruntime": ort.__version__, "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
