"""The tech report's Fig. A.2-A.4: a GAN discriminator's accuracy on normal images and on novel
ones while it trains, with the fours of MNIST held out (leave-one-out).

    python benchmarks/gan_lab_curves.py --variant gan-disc:epochs=2 --variant gan-disc:init=ae,epochs=2 \
        --out docs/results/gan-lab-curves

After each epoch the held-out test fours, and the trained digits' test images, are scored by the
epoch's discriminator: D's accuracy on each (a four is right when D(x) < 1/2, a trained digit when
D(x) > 1/2). These are diagnostics, recorded under `diagnostic_` names; nothing reads them to
choose. Writes one JSON line per variant to OUT/curves.jsonl and OUT/<variant>_steps.png.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from noveltykit.data import load_dataset
from noveltykit.data.protocols import make_split
from noveltykit.detectors import make
from noveltykit.detectors.context import RunContext
from noveltykit.detectors.specs import MethodSpec
from noveltykit.analysis.metrics import auroc
from noveltykit.analysis.plots import plot_step_trace
from noveltykit.fileio import atomic_write_bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="gan-disc:key=value,...")
    ap.add_argument("--held-out", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/gan-lab-curves")
    args = ap.parse_args()
    ds = load_dataset("mnist", progress=False)
    split = make_split(ds, "leave-one-out", args.held_out, args.seed)
    train_x, val_x, test_x, is_novel = split.arrays(ds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for text in args.variant:
        spec = MethodSpec.parse(text)
        if spec.detector != "gan-disc" or dict(spec.params).get("score", "1-d") != "1-d":
            raise SystemExit(f"{text}: this figure reads D(x) = 1 - score; give gan-disc with score=1-d")

        def accuracies(score):
            d = 1 - score(test_x)  # D(x), the probability of "real"
            return {"diagnostic_novel_d_acc": float((d[is_novel] < 0.5).mean()),
                    "diagnostic_normal_test_d_acc": float((d[~is_novel] > 0.5).mean())}

        det = make(spec.detector, **{"random_state": args.seed, **dict(spec.params)})
        det.configure(RunContext(monitor=accuracies))
        t0 = time.perf_counter()
        det.fit(train_x, val_x)
        seconds = time.perf_counter() - t0
        scores = det.decision_function(test_x)
        row = {"variant": spec.label, "held_out": args.held_out, "seed": args.seed, "seconds": seconds,
               "auroc": auroc(is_novel, scores), "history": det.history_, "pathology_events": det.events_}
        plot = plot_step_trace(out / f"{spec.label.replace(':', '_').replace(',', '_')}_steps.png", det.trace_,
                              f"MNIST, {args.held_out}s held out, seed {args.seed} - {spec.label}",
                              det.events_, det.history_)
        row["plot"] = plot.name
        print(f"{spec.label}: AUROC {row['auroc']:.4f}, D accuracy on held-out {args.held_out}s by epoch "
              f"{[round(h['diagnostic_novel_d_acc'], 3) for h in det.history_]} ({seconds:.0f} s)", flush=True)
        with open(out / "curves.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    atomic_write_bytes(out / "command.txt", ("python benchmarks/gan_lab_curves.py " + " ".join(
        f"--variant {v}" for v in args.variant) + f" --held-out {args.held_out} --seed {args.seed} --out {args.out}\n"
    ).encode())


if __name__ == "__main__":
    main()
