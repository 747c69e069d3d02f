"""results.json -> table.md (classes by methods, as the paper's Table IV; the published values apart,
below) and report.md (tables, plots, provenance)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..fileio import atomic_write_bytes
from .paper_values import paper_columns
from .results import merge_results, read_runs

METRICS = {"auroc": "AUROC", "aupr": "AUPR (novel positive)", "fpr95": "FPR at 95% TPR (lower is better)",
           "pixel_auroc": "Pixel AUROC (where: defect pixels against normal ones)",
           "pro": "PRO (per-region overlap up to 30% pixel FPR, normalised)"}
# Only a dataset with masks and a detector with maps give these: a cell without them shows "-".
WHERE_METRICS = ("pixel_auroc", "pro")
# Derived from a trained detector's history (bench --curves): the test AUROC of the epoch with the
# lowest normal-validation loss, i.e. what `select=val` reports. The choice sees no test label.
VAL_SELECTED = "auroc_val"
# Above the published values' table: they are not this project's runs.
PUBLISHED_TITLE = ("**Published (not rerun here)**: the P-KDGAN paper's Table IV, as printed (original images, "
                   "their own runs; Fashion-MNIST: Table V's teacher mean, no per-class values), for the rows above.")


def metric_value(record: dict, metric: str) -> float | None:
    if metric in WHERE_METRICS:
        return record.get(metric)
    if metric != VAL_SELECTED:
        return record[metric]
    history = record.get("history") or []
    if not history or "diagnostic_test_auroc" not in history[0]:
        return None  # not a trained detector, or run without --curves
    chosen = min(range(len(history)), key=lambda i: history[i]["val_loss"])
    return history[chosen]["diagnostic_test_auroc"]


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def _class_label(cls: int, name: str) -> str:
    return f"{cls} {name}" if name != str(cls) else str(cls)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def metric_table(results: list[dict], metric: str = "auroc", with_paper: bool = True) -> str:
    """This project's runs: classes as rows, methods as columns, MEAN last. A cell is mean ± std
    over seeds; the MEAN row's ± is the std over seeds of the per-seed mean over classes. With
    `with_paper` (AUROC only) the published values for the same rows follow in a table of their own
    below, under PUBLISHED_TITLE: never columns beside the runs, which they are not."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    classes = sorted({(r["class"], r["class_name"]) for r in results})
    by_cell: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in results:
        if (value := metric_value(r, metric)) is not None:
            by_cell[(r["class"], r["method"])][r["seed"]] = value
    # Detectors on ImageNet features are not one-class learners from scratch: say so in the header.
    pretrained = {r["method"] for r in results if "feature_seconds" in r}
    header = ["class"] + [f"{m} (ImageNet-pretrained)" if m in pretrained else m for m in methods]
    lines = [_row(header), "|" + "---|" * len(header)]
    for cls, name in classes:
        lines.append(_row([_class_label(cls, name)] + [_fmt(list(by_cell[(cls, m)].values())) for m in methods]))
    means = [("**MEAN**", classes)]
    common = [(c, n) for c, n in classes if all(by_cell[(c, m)] for m in methods)]
    if common and len(common) < len(classes):  # some method ran on fewer classes: compare like with like
        means.append((f"**MEAN of classes {', '.join(str(c) for c, _ in common)}**", common))
    lines += [_mean_row(label, rows, methods, by_cell) for label, rows in means]
    paper = paper_columns(results[0]["dataset"], results[0]["protocol"]) if with_paper and metric == "auroc" else {}
    if paper:
        lines += ["", published_table(paper, classes, means)]
    return "\n".join(lines)


def published_table(paper: dict[str, list], classes: list[tuple[int, str]], means: list[tuple[str, list]]) -> str:
    """The published values (`paper_values.paper_columns`) for the rows of a table of runs: its
    classes, then its MEAN rows (`means`: label and the classes each averages), under PUBLISHED_TITLE."""
    header = ["class", *paper]
    lines = [PUBLISHED_TITLE, "", _row(header), "|" + "---|" * len(header)]
    for cls, name in classes:
        lines.append(_row([_class_label(cls, name)]
                          + [f"{paper[k][cls]:.3f}" if paper[k][cls] is not None else "-" for k in paper]))
    for label, rows in means:
        lines.append(_row([label] + [_paper_mean(paper[k], [c for c, _ in rows]) for k in paper]))
    return "\n".join(lines)


def _mean_row(label: str, classes, methods, by_cell) -> str:
    row = [label]
    for m in methods:
        seeds = sorted({s for c, _ in classes for s in by_cell[(c, m)]})
        # A seed's mean counts only when that seed covers every class of the row.
        per_seed = [np.mean([by_cell[(c, m)][s] for c, _ in classes]) for s in seeds
                    if all(s in by_cell[(c, m)] for c, _ in classes)]
        row.append(f"**{_fmt(per_seed)}**" if per_seed else "-")
    return _row(row)


def _paper_mean(values: list, classes: list[int]) -> str:
    """The mean of the published per-class values, or the published mean over all classes."""
    if all(values[c] is not None for c in classes):
        return f"{np.mean([values[c] for c in classes]):.4f}"
    if len(values) > 10 and len(classes) == 10:
        return f"{values[-1]:.4f}"
    return "-"


def _span(values) -> str:
    return f"{min(values):.0f}-{max(values):.0f}" if values else "-"


def _resumed(record: dict) -> bool:
    """A cell's `resumed` (its detector's `fit_resumed`: an ensemble's members too); a record
    made before that field by its history's `from_checkpoint` marks (such an ensemble's cell,
    whose histories are its members', counts as not resumed)."""
    if "resumed" in record:
        return bool(record["resumed"])
    return any(h.get("from_checkpoint") for h in record.get("history") or [])


def timing_table(results: list[dict]) -> str:
    """Fit and score seconds per method, and a trained detector's epoch seconds. A cell resumed
    from a checkpoint (`resumed`) has a fit time that covers only the epochs its last process
    ran (and still enters the fit mean and range), so the count of such cells is shown beside
    them. A cell whose fit was loaded from a fit cache
    (`fit_loaded_from_cache`) is counted apart and left out of the fit and epoch seconds and of
    the resumed cells (its history is the run's that fitted it)."""
    lines = ["| method | fit s (mean) | fit s (range) | score s (range) | epoch s (range) | test images "
             "| cells | resumed cells | fits loaded |", "|---|---|---|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in results):
        rs = [r for r in results if r["method"] == m]
        fitted = [r for r in rs if not r.get("fit_loaded_from_cache")]
        fits = [r["fit_seconds"] for r in fitted]
        epochs = [h["seconds"] for r in fitted for h in r.get("history") or [] if "seconds" in h]
        resumed = sum(_resumed(r) for r in fitted)
        mean = f"{np.mean(fits):.2f}" if fits else "-"
        lines.append(f"| {m} | {mean} | {_span(fits)} | {_span([r['score_seconds'] for r in rs])} | "
                     f"{_span(epochs)} | {rs[0]['n_test']} | {len(rs)} | {resumed} | {len(rs) - len(fitted)} |")
    return "\n".join(lines)


def threshold_table(results: list[dict]) -> str:
    """How the validation-quantile threshold behaves on test (nothing was tuned on these)."""
    lines = ["| method | threshold quantile | test FPR at threshold | test TPR at threshold |",
             "|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in results):
        rs = [r for r in results if r["method"] == m]
        q = rs[0]["params"].get("threshold_quantile", "-")
        lines.append(f"| {m} | {q} | {np.mean([r['test_fpr_at_threshold'] for r in rs]):.3f} | "
                     f"{np.mean([r['test_tpr_at_threshold'] for r in rs]):.3f} |")
    return "\n".join(lines)


def _describe(results: list[dict]) -> str:
    r0 = results[0]
    seeds = sorted({r["seed"] for r in results})
    commits = sorted({r.get("git_commit", "unknown") for r in results})
    return (f"Dataset **{r0['dataset']}**, protocol **{r0['protocol']}**, seeds {seeds}, "
            f"normal-only validation fraction {r0['val_fraction']} (thresholds come from it; test "
            f"labels are used for these metrics only). Data source: {r0.get('data_source', '?')}. "
            f"Commit(s): {', '.join(commits)}. torch {r0.get('versions', {}).get('torch', '?')}.")


def write_report(out: str | Path, results: list[dict]) -> Path:
    out = Path(out)
    if not results:
        return out
    table = metric_table(results, "auroc")  # this project's runs, the published values apart below
    commands = sorted({r.get("command", "") for r in results} - {""})
    command_text = "\n".join(f"    {c}" for c in commands) or "    (Python API)"
    atomic_write_bytes(out / "table.md", f"# One-class AUROC\n\n{_describe(results)}\n\n{table}\n".encode())
    parts = [f"# Benchmark report\n\n{_describe(results)}\n\nMade by:\n\n{command_text}\n",
             f"## AUROC\n\n{table}\n"]
    where = [m for m in WHERE_METRICS if any(m in r for r in results)]
    for metric in ("aupr", "fpr95", *where):
        parts.append(f"## {METRICS[metric]}\n\n{metric_table(results, metric, with_paper=False)}\n")
    parts.append(f"## Thresholds from the validation split, seen on test\n\n{threshold_table(results)}\n")
    parts.append(f"## Time\n\n{timing_table(results)}\n")
    plots = [r for r in results if r.get("plot") and (out / r["plot"]).exists()]
    if plots:
        parts.append("## Plots (ROC and score histogram per cell)\n\n" + "\n".join(
            f"- [{r['method']} class {r['class']} seed {r['seed']}]({r['plot']})" for r in plots) + "\n")
    grids = [r for r in results if r.get("maps_grid") and (out / r["maps_grid"]).exists()]
    if grids:
        parts.append("## Anomaly maps (per cell: the 4 most novel test images above, the 4 least novel below; "
                     "each beside its map on the model's scale, the pixels above its pixel threshold outlined "
                     "in white, the ground-truth mask in cyan)\n\n" + "\n\n".join(
                         f"{r['method']} class {_class_label(r['class'], r['class_name'])} seed {r['seed']}\n\n"
                         f"![maps: {r['method']} class {r['class']} seed {r['seed']}]({r['maps_grid']})"
                         for r in grids) + "\n")
    path = out / "report.md"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path


def companion_cells(results: list[dict]) -> list[dict]:
    """Each cell's companions as cells of their own, method `METHOD [ROLE]`: what the cell's fit
    produced beside its detector (an ensemble's members, a distilled student's teacher), which
    bench scored on the same test images. Their AUROC is all bench measures of them."""
    return [{**{k: r[k] for k in ("dataset", "protocol", "class", "class_name", "seed")},
             "method": f"{r['method']} [{role}]", "auroc": r[f"{role}_auroc"]}
            for r in results for role in r.get("companions", ())]


def report_runs(runs: Sequence[str | Path], metric: str = "auroc", *, seeds: Sequence[int] | None = None,
                classes: Sequence[int] | None = None, methods: Sequence[str] | None = None,
                with_paper: bool = True, times: bool = False, companions: bool = False) -> str:
    """The table of one or more bench folders (`merge_results` says what is kept and what is
    refused), and the timing table below it with `times`. `companions`: also a column for each
    of them (`companion_cells`; AUROC only). A single folder reported without `seeds` or
    `classes` also gets its own table.md and report.md rebuilt."""
    if companions and metric != "auroc":
        raise ValueError(f"companions have an AUROC only, not {metric!r}")
    loaded = read_runs(runs)
    if len(loaded) == 1 and seeds is None and classes is None:
        write_report(*loaded[0])
    if companions:
        loaded = [(run, found + companion_cells(found)) for run, found in loaded]
    results = merge_results(loaded, seeds=seeds, classes=classes, methods=methods)
    text = metric_table(results, metric, with_paper=with_paper)
    own = [r for r in results if "fit_seconds" in r]  # a companion's time is inside its cell's
    return f"{text}\n\n{timing_table(own)}" if times and own else text
