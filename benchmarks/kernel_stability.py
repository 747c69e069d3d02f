"""How the conformance suite's fast GAN settings rank the blobs task on this process's float kernels.

Each run fits a detector on one blobs dataset (the conformance test's task: 50 normal 32x32x3
images, 30 test images a class) and prints one JSON line with the test AUROC and the kernel path
torch runs (`torch.backends.cpu.get_cpu_capability()`). Run it once per kernel setting to see
whether a setting is stable across CPUs, e.g.

    python benchmarks/kernel_stability.py --settings paper-w4-e10 fast
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/kernel_stability.py --settings paper-w4-e10 fast
    ATEN_CPU_CAPABILITY=default python benchmarks/kernel_stability.py --settings paper-w4-e10 fast

Data seeds x init seeds (`random_state`) stand in for the small numeric differences that another
CPU's kernels make: a setting whose AUROC swings across them also swings across CPUs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_blobs_dataset  # noqa: E402
from test_conformance import FAST_PARAMS, GAN_FAST, KDGAN_FAST  # noqa: E402

from noveltykit import detectors  # noqa: E402
from noveltykit.analysis.metrics import auroc  # noqa: E402

GANS = ["ede-gan", "edhat-gan", "ed-gan"]
SETTINGS = {  # name -> (detectors, parameters)
    "paper-w4-e10": (GANS, {"width": 4, "epochs": 10, "batch_size": 8, "preset": "paper"}),  # the old one
    "fast": (GANS, GAN_FAST),  # the conformance suite's GAN settings now
    "fast-e20": (GANS, {**GAN_FAST, "epochs": 20}),  # the suite's GAN settings before session 8 (20 epochs)
    "kdgan-fast": (["kdgan"], KDGAN_FAST),
    # cheaper candidates for the suite's quick gate (session 10): half the GAN epochs, fewer kdgan ones
    "fast-e5": (GANS, {**GAN_FAST, "epochs": 5}),
    "fast-e4": (GANS, {**GAN_FAST, "epochs": 4}),
    "kdgan-e3": (["kdgan"], {**KDGAN_FAST, "epochs": 3}),
    "kdgan-e2": (["kdgan"], {**KDGAN_FAST, "epochs": 2}),
    # the reconstruction family and Deep SVDD at the suite's settings (each its own parameters)
    **{f"{name}-fast": ([name], FAST_PARAMS[name])
       for name in ("ae", "conv-ae", "dae", "contractive-ae", "vae", "deep-svdd")},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--data-seeds", type=int, default=3)
    ap.add_argument("--init-seeds", type=int, default=3)
    ap.add_argument("--out", help="append the JSON lines to this file too")
    ap.add_argument("--summarize", nargs="+", metavar="JSONL",
                    help="print one table of min / mean AUROC per setting and kernel path from these files")
    args = ap.parse_args()
    if args.summarize:
        return summarize(args.summarize)
    torch.set_num_threads(1)  # as the test suite runs
    rows = []
    for data_seed in range(args.data_seeds):
        ds = make_blobs_dataset(n_train=60, n_test=30, channels=3, size=32, seed=data_seed)
        normal = ds.train_x[ds.train_y == 0]
        train, val, test, novel = normal[:50], normal[50:], ds.test_x, ds.test_y != 0
        for init_seed in range(args.init_seeds):
            for setting in args.settings:
                names, params = SETTINGS[setting]
                for name in names:
                    t0 = time.perf_counter()
                    det = detectors.make(name, random_state=init_seed, **params).fit(train, val)
                    row = {"kernels": torch.backends.cpu.get_cpu_capability(), "setting": setting,
                           "detector": name, "data_seed": data_seed, "init_seed": init_seed,
                           "auroc": round(auroc(novel, det.decision_function(test)), 4),
                           "fit_seconds": round(time.perf_counter() - t0, 2)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print("\n| kernels | setting | detector | runs | min AUROC | mean AUROC |\n|---|---|---|---|---|---|")
    for setting in args.settings:
        for name in SETTINGS[setting][0]:
            a = [r["auroc"] for r in rows if r["setting"] == setting and r["detector"] == name]
            print(f"| {rows[0]['kernels']} | {setting} | {name} | {len(a)} | {min(a):.4f} | {sum(a) / len(a):.4f} |")


def summarize(paths: list[str]) -> None:
    rows = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    kernels = sorted({r["kernels"] for r in rows}, key=["AVX512", "AVX2", "DEFAULT"].index)
    print("| setting | detector | " + " | ".join(f"{k} min / mean (runs)" for k in kernels) + " |")
    print("|---|---|" + "---|" * len(kernels))
    for setting, detector in dict.fromkeys((r["setting"], r["detector"]) for r in rows):
        cells = []
        for k in kernels:
            a = [r["auroc"] for r in rows if (r["setting"], r["detector"], r["kernels"]) == (setting, detector, k)]
            cells.append(f"{min(a):.4f} / {sum(a) / len(a):.4f} ({len(a)})" if a else "-")
        print(f"| {setting} | {detector} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
