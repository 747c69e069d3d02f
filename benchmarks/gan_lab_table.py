"""One row per method of GAN-lab bench folders: mean and worst test AUROC over the classes, what
the pathology monitors said, D's accuracy on normal validation images at the last epoch, fit time.

    python benchmarks/gan_lab_table.py docs/results/gan-lab-mnist/results.json \\
        --ref docs/results/baselines-mnist/results.json:knn --ref docs/results/ede-gan-mnist/results.json:ede-gan

Every figure is the last epoch's (no epoch is chosen); `--ref FILE:METHOD` adds a method's row
from another folder, AUROC only. Only cells of one seed are read (`--seed`, default 0).
`--per-epoch` prints instead the mean over classes of each GAN epoch's test AUROC, the `--curves`
diagnostic that nothing reads to choose. `--frozen` prints, for each cell whose per-step trace has
learning rates (`lr_control` runs), the first step at which both rates sat at 0 and the share of
the steps after it at which they still did; it reads the traces in the bench folder
(`OUT/traces/`, not copied to docs/results). `--events` prints each cell in which a monitor
fired: its AUROC, each monitor's first step, and how often D was re-initialised.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path


def cells_by_method(path: str, seed: int) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for cell in json.load(open(path))["results"]:
        if cell["seed"] == seed:
            out[cell["method"]].append(cell)
    return out


def monitors(cells: list[dict]) -> str:
    """'stuck in 7 cells (steps 343-668)' per monitor that fired; 'none' when none did."""
    steps = defaultdict(list)
    for cell in cells:
        for monitor in dict.fromkeys(e["monitor"] for e in cell["pathology_events"]):
            steps[monitor].append(min(e["step"] for e in cell["pathology_events"] if e["monitor"] == monitor))
    return "; ".join(f"`{m}` in {len(s)} (first at steps {min(s)}-{max(s)})" for m, s in sorted(steps.items())) or "none"


def row(method: str, cells: list[dict], full: bool) -> str:
    cells = sorted(cells, key=lambda c: c["class"])
    a = [c["auroc"] for c in cells]
    worst = min(cells, key=lambda c: c["auroc"])
    head = (f"| {method} | {len(cells)} | {sum(a) / len(a):.4f} | {worst['auroc']:.4f} ({worst['class_name']}) "
            f"| {sum(x < 0.5 for x in a)} |")
    if not full:
        return head + " | | |"
    d_val = [c["history"][-1]["d_acc_val"] for c in cells if c["history"] and "d_acc_val" in c["history"][-1]]
    d_text = f"{sum(d_val) / len(d_val):.3f}" if d_val else "-"
    fit = sum(c["fit_seconds"] for c in cells) / len(cells)
    return head + f" {d_text} | {monitors(cells)} | {fit:.0f} s |"


def per_epoch(method: str, cells: list[dict]) -> str:
    runs = [[e["diagnostic_test_auroc"] for e in c["history"] if e.get("phase", "gan") == "gan"] for c in cells]
    means = [sum(r[i] for r in runs) / len(runs) for i in range(min(map(len, runs)))]
    return f"| {method} | " + " | ".join(f"{m:.3f}" for m in means) + " |"


def frozen(folder: Path, cell: dict) -> str | None:
    """One row: the first step with both rates 0, the share of later steps at 0, and the ranges of
    L_g, L_C and D's batch accuracy from that step on; None for a trace without rates."""
    trace = json.load(open(folder / cell["trace_file"]))
    if "lr_g" not in trace:
        return None
    zero = [i for i, (g, d) in enumerate(zip(trace["lr_g"], trace["lr_d"])) if g == 0 == d]
    if not zero:
        return f"| {cell['method']} | {cell['class']} | never | - | - | - | - |"
    share = len(zero) / (len(trace["lr_g"]) - zero[0])
    spans = " | ".join(f"{min(trace[k][zero[0]:]):.2f}-{max(trace[k][zero[0]:]):.2f}"
                       for k in ("loss_g", "loss_d", "d_acc"))
    return f"| {cell['method']} | {cell['class']} | {trace['step'][zero[0]]} | {share:.2f} | {spans} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="results.json of bench folders")
    ap.add_argument("--ref", action="append", default=[], metavar="FILE:METHOD")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-epoch", action="store_true")
    ap.add_argument("--frozen", action="store_true")
    ap.add_argument("--events", action="store_true")
    args = ap.parse_args()
    if args.events:
        print("| method | class | AUROC | monitors (first step) | D re-initialised |")
        print("|---|---|---|---|---|")
        for path in args.results:
            for method, cells in cells_by_method(path, args.seed).items():
                for cell in sorted(cells, key=lambda c: c["class"]):
                    if cell["pathology_events"]:
                        first = {}
                        for e in cell["pathology_events"]:
                            first.setdefault(e["monitor"], e["step"])
                        fired = ", ".join(f"`{m}` ({step})" for m, step in first.items())
                        reinits = sum(h.get("d_reinits", 0) for h in cell["history"])
                        print(f"| {method} | {cell['class']} | {cell['auroc']:.4f} | {fired} | {reinits} |")
        return
    if args.frozen:
        print("| method | class | first step with both rates 0 | share of the later steps at 0 "
              "| L_g from then | L_C from then | D batch accuracy from then |")
        print("|---|---|---|---|---|---|---|")
        for path in args.results:
            for method, cells in cells_by_method(path, args.seed).items():
                for cell in sorted(cells, key=lambda c: c["class"]):
                    controlled = cell["params"].get("lr_control") not in (None, "none")
                    line = controlled and cell.get("trace_file") and frozen(Path(path).parent, cell)
                    if line:
                        print(line)
        return
    if args.per_epoch:
        for path in args.results:
            for method, cells in cells_by_method(path, args.seed).items():
                print(per_epoch(method, cells))
        return
    print("| method | classes | mean AUROC | worst (class) | below 0.5 | D on normal val, last epoch "
          "| monitors fired (cells) | fit, mean |")
    print("|---|---|---|---|---|---|---|---|")
    for ref in args.ref:
        path, method = ref.rsplit(":", 1)
        print(row(method, cells_by_method(path, args.seed)[method], full=False))
    for path in args.results:
        by_method = cells_by_method(path, args.seed)
        for method, cells in by_method.items():
            print(row(method, cells, full=True))
    counts = Counter(c["class"] for p in args.results for cs in cells_by_method(p, args.seed).values() for c in cs)
    if len(set(counts.values())) > 1:
        print(f"\n(not every method has every class yet: {dict(sorted(counts.items()))})")


if __name__ == "__main__":
    main()
