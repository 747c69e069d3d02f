"""TensorBoard event files for benchmark cells (`bench --tensorboard DIR`, the optional extra
`noveltykit[tensorboard]`), beside the JSON records, which stay the source of truth: these are a
view for people, written from a cell's finished record and read by nothing here.

One run folder a cell, DIR/<method>/class<c>_seed<s>:
    epoch/<name>   each number of the cell's per-epoch history (losses, rates, diagnostics)
    step/<name>    the per-step trace, when the cell has one (the GAN lab's)
    cell/<metric>  the cell's metrics (AUROC, AUPR, ...), at step 0
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

TENSORBOARD_INSTALL = "pip install 'noveltykit[tensorboard]'"
CELL_METRICS = ("auroc", "aupr", "fpr95", "prec_at_n", "auroc_val", "threshold", "test_fpr_at_threshold",
                "test_tpr_at_threshold", "fit_seconds", "score_seconds")


def summary_writer():
    """torch's SummaryWriter class; a clear message when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(f"--tensorboard needs TensorBoard, an optional extra: {TENSORBOARD_INSTALL}") from None
    return SummaryWriter


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_cell_events(log_dir: str | Path, stem: str, record: dict, trace: dict | None = None) -> Path:
    """Write one cell's events into log_dir/stem (replacing any from an earlier run of the cell);
    returns that folder."""
    run_dir = Path(log_dir) / stem
    if run_dir.exists():  # a rerun of a failed or deleted cell: its old curves would be mixed in
        shutil.rmtree(run_dir)
    with summary_writer()(log_dir=str(run_dir)) as writer:
        for row in record.get("history") or []:
            for name, value in row.items():
                if name != "epoch" and _number(value):
                    writer.add_scalar(f"epoch/{name}", value, row.get("epoch", 0))
        if trace:
            steps = trace.get("step") or range(len(next(iter(trace.values()), [])))
            for name, values in trace.items():
                if name != "step":
                    for step, value in zip(steps, values):
                        if _number(value):
                            writer.add_scalar(f"step/{name}", value, step)
        for name in CELL_METRICS:
            if _number(record.get(name)):
                writer.add_scalar(f"cell/{name}", record[name], 0)
        writer.add_text("cell/method", f"{record['method']} on {record['dataset']} {record['protocol']}, "
                                       f"class {record['class_name']}, seed {record['seed']}")
    return run_dir
