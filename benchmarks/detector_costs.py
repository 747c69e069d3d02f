"""Fit and score cost of every registered detector, at its default parameters, on one fixed input.

The input: 1000 MNIST training images at 32x32, a seeded sample (seed 0) of the digits 0-8 (so
that `certainty`, which needs class labels, gets them; the other detectors ignore them), and 1000
seeded MNIST test images of every digit. `fit(X)` holds out its own 10% for the threshold, as
`noveltykit fit` does, and that scoring is part of the fit. One thread (torch, BLAS, OpenMP), one
process. The figures are CPU seconds of this process (`time.process_time`), which on one thread
are the wall seconds of an otherwise idle core and move less than wall time when the machine is
shared; wall seconds are recorded too. A detector whose fit and score take under 2 s is run 5
times and its fastest run kept (a fit of `knn` takes milliseconds).

Each detector's result is written to the JSON as soon as it is done, so a killed run resumes
where it stopped: rerun the same command, and detectors already in the file are skipped
(`--only NAME ...` measures those again, e.g. a new detector). `noveltykit detectors` reads the
file to print each detector's cost relative to `knn`. `--only` also takes a spec with parameters,
e.g. `feat-gauss:size=128`: it is kept under "specs", apart from the defaults.

Usage: python benchmarks/detector_costs.py [--out src/noveltykit/detectors/costs.json] [--only NAME ...]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy and torch
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import noveltykit.detectors as nd  # noqa: E402
from noveltykit.data import load_dataset  # noqa: E402
from noveltykit.detectors.specs import MethodSpec  # noqa: E402
from noveltykit.experiments.provenance import cpu_model, git_commit  # noqa: E402
from noveltykit.fileio import atomic_write_json  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "noveltykit" / "detectors" / "costs.json"
N_TRAIN, N_TEST, HELD_OUT_DIGIT, SEED = 1000, 1000, 9, 0
REPEAT_UNDER_S, REPEATS = 2.0, 5
INPUT = (f"MNIST at 32x32: {N_TRAIN} training images, a seeded sample (seed {SEED}) of the digits 0-8 "
         f"with their labels (only detectors that use labels read them); {N_TEST} seeded test images of "
         "every digit. fit(X) holds out its own 10% for the threshold (part of the fit time).")


def cpu_id() -> str:
    """The CPU's family and model numbers (the model name alone may be a generic 'Xeon')."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cpu family", "model") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        return "unknown"
    return f"family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}"


def the_input():
    ds = load_dataset("mnist")
    rng = np.random.default_rng(SEED)
    normal = np.flatnonzero(ds.train_y != HELD_OUT_DIGIT)
    train_idx = np.sort(rng.choice(normal, N_TRAIN, replace=False))
    test_idx = np.sort(rng.choice(len(ds.test_x), N_TEST, replace=False))
    return ds.train_x[train_idx], ds.train_y[train_idx], ds.test_x[test_idx]


def measure_once(name: str, train_x, train_y, test_x) -> dict:
    spec = MethodSpec.parse(name)
    det = nd.make(spec.detector, **dict(spec.params))
    y = train_y if det.uses_labels else None
    c0, w0 = time.process_time(), time.perf_counter()
    det.fit(train_x, y=y)
    c1, w1 = time.process_time(), time.perf_counter()
    scores = det.decision_function(test_x)
    c2, w2 = time.process_time(), time.perf_counter()
    if not np.isfinite(scores).all():
        raise RuntimeError(f"{name}: non-finite scores")
    return {"fit_s": c1 - c0, "score_s": c2 - c1, "fit_wall_s": w1 - w0, "score_wall_s": w2 - w1}


def measure(name: str, train_x, train_y, test_x) -> dict:
    runs = [measure_once(name, train_x, train_y, test_x)]
    if runs[0]["fit_s"] + runs[0]["score_s"] < REPEAT_UNDER_S:
        runs += [measure_once(name, train_x, train_y, test_x) for _ in range(REPEATS - 1)]
    best = {key: min(r[key] for r in runs) for key in runs[0]}
    # a plain fit, as `noveltykit fit` runs it: nothing a benchmark run would share (a feature store,
    # a teacher cache) is given, so e.g. a distilled student trains its own teacher here
    return {**{k: round(v, 4) for k, v in best.items()}, "runs": len(runs),
            "run_needs_not_given": sorted(nd.detector_class(MethodSpec.parse(name).detector).run_needs),
            "cpu": cpu_model(),
            "cpu_id": cpu_id(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "commit": git_commit(),
            "date": datetime.date.today().isoformat()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="measure these detectors (again); NAME:key=value,... a spec, kept under 'specs'")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    # 100 held-out images is few for a 95% quantile, and each fit says so; this run measures time only
    warnings.filterwarnings("ignore", message=r".*normal validation images score above the threshold")
    torch.manual_seed(SEED)
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
    doc["measured"] = {
        "command": "python benchmarks/detector_costs.py",
        "what": ("CPU seconds of one process on one thread (torch, BLAS and OpenMP set to 1), each detector "
                 "at its default parameters (`noveltykit.detectors.make(name)`), fit then decision_function; "
                 f"a detector under {REPEAT_UNDER_S:g} s is run {REPEATS} times and its fastest run kept; "
                 "a plain fit, without what a benchmark run shares (`run_needs_not_given`): the feat-* "
                 "detectors extract every image, kdgan trains its own EDE-GAN teacher"),
        "input": INPUT,
        "input_short": f"fit on {N_TRAIN} MNIST training images, score {N_TEST} test images, 32x32",
        "cpu": cpu_model(), "cpu_id": cpu_id(),
    }
    results, specs = doc.setdefault("detectors", {}), doc.setdefault("specs", {})
    names = args.only or [n for n in nd.available() if n not in results]
    unknown = sorted({MethodSpec.parse(n).detector for n in names} - set(nd.available()))
    if unknown:
        ap.error(f"unknown detector(s) {unknown}; available: {nd.available()}")
    atomic_write_json(args.out, doc)  # how and where, even when nothing is left to measure
    train_x, train_y, test_x = the_input()
    print(f"{len(names)} detector(s) to measure on {cpu_model()} ({cpu_id()}); {INPUT}", flush=True)
    for name in names:
        print(f"{name} ...", end=" ", flush=True)
        kept = results if name in nd.available() else specs
        kept[name] = r = measure(name, train_x, train_y, test_x)
        doc["detectors"], doc["specs"] = dict(sorted(results.items())), dict(sorted(specs.items()))
        atomic_write_json(args.out, doc)  # each result kept as soon as it exists: a killed run resumes
        print(f"fit {r['fit_s']:.3f} s, score {r['score_s']:.3f} s (wall {r['fit_wall_s']:.1f} / "
              f"{r['score_wall_s']:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
