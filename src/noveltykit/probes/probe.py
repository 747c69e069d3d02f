"""`noveltykit probe`: attack a saved detector on test images of one benchmark cell and write
what it took to flip its decisions (`adversarial`): probe.json, probe.md and probe.png.

The test images are those of the cell's split (`protocols.make_split`), a seeded choice of
normal and novel ones, half each where the split has enough. Perturbed images are clipped back
to [-1, 1], so every probed image is one the detector accepts, and before/after scores are the
detector's own `decision_function`: a flip in the results is a flip of `predict`.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..analysis.plots import pyplot
from ..data import load_dataset
from ..data.images import to_float
from ..data.protocols import make_split
from ..detectors import load
from ..fileio import atomic_write_bytes, atomic_write_json
from .attacks import TARGETS, clip_to_range, deepfool, detector_decision, fgsm, perturbation_norms, robustness

ATTACKS = ("fgsm", "deepfool")
DEFAULT_EPS = 16 / 255  # 8 grey levels of 255 in the [-1, 1] scale
GRID_COLUMNS = 8


def choose_images(is_novel: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted positions of n test images, half normal and half novel where there are enough."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    normal, novel = np.flatnonzero(~is_novel), np.flatnonzero(is_novel)
    n_novel = min(len(novel), max(n - len(normal), n // 2))
    n_normal = min(len(normal), n - n_novel)
    picked = np.concatenate([rng.choice(normal, n_normal, replace=False), rng.choice(novel, n_novel, replace=False)])
    return np.sort(picked)


def run_probe(model_dir, attack: str, dataset: str, cls, out_dir, n: int = 16, eps: float = DEFAULT_EPS,
              protocol: str = "one-vs-rest", seed: int = 0, data_root: str | None = None,
              target: str = "decision", overshoot: float = 0.02, max_iter: int = 50) -> dict:
    """Attack n test images of (dataset, cls, protocol, seed) with a saved detector; write
    probe.json, probe.md and probe.png into out_dir (each file atomically) and return the record."""
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    det = load(model_dir)
    f = detector_decision(det, target)  # refuses a detector it cannot attack, before loading data
    ds = load_dataset(dataset, data_root, progress=False)
    split = make_split(ds, protocol, cls, seed)
    pos = choose_images(split.test_is_novel, n, seed)
    test_idx, is_novel = split.test_idx[pos], split.test_is_novel[pos]
    x = to_float(ds.test_x[test_idx])

    if attack == "fgsm":
        result, params = fgsm(f, x, eps), {"eps": eps}
    else:
        result = deepfool(f, x, overshoot=overshoot, max_iter=max_iter, bounds=(-1.0, 1.0))
        params = {"overshoot": overshoot, "max_iter": max_iter}
    result = clip_to_range(f, x, result)
    x_adv = (x + result.perturbation).clamp(-1, 1)
    before, after = det.decision_function(x), det.decision_function(x_adv)
    threshold = float(det.threshold_)
    if target == "decision":  # the detector's verdict, re-scored: what `predict` says
        flipped = torch.as_tensor((before > threshold) != (after > threshold))
    else:  # the classifier's predicted class, taken by the attack on the clipped images
        flipped = result.flipped
    l2, linf = perturbation_norms(result.perturbation)

    rows = []
    for i in range(len(x)):
        row = {"index": int(test_idx[i]), "is_novel": bool(is_novel[i]), "score_before": float(before[i]),
               "score_after": float(after[i]), "threshold": threshold, "flipped": bool(flipped[i]),
               "l2": float(l2[i]), "linf": float(linf[i]), "iterations": int(result.iterations[i])}
        if target == "class":
            row["class_before"] = det.classes_[int(result.label_before[i])].item()
            row["class_after"] = det.classes_[int(result.label_after[i])].item()
        rows.append(row)
    record = {"attack": attack, "target": target, "params": params, "model": str(model_dir),
              "detector": det.name, "dataset": ds.name, "class": split.target_class,
              "class_name": ds.class_names[split.target_class], "protocol": protocol, "seed": seed,
              "norms": "L2 and Linf of the perturbation in the images' [-1, 1] scale",
              **robustness(result.perturbation, x, flipped), "rows": rows}

    out = Path(out_dir)
    title = (f"{attack} on {det.name}, {ds.name} class {record['class_name']} ({protocol}), "
             f"{record['n_flipped']}/{record['n']} flipped")
    atomic_write_bytes(out / "probe.png", example_grid(x, result.perturbation, x_adv, rows, title))
    atomic_write_bytes(out / "probe.md", markdown(record).encode())
    atomic_write_json(out / "probe.json", record)  # last: its presence says the probe finished
    return record


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def markdown(record: dict) -> str:
    """The probe as a short markdown report: the summary, then one row per image."""
    params = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in record["params"].items())
    lines = [f"# {record['attack']} probe of {record['detector']} ({record['model']})", "",
             (f"{record['dataset']} class {record['class_name']}, {record['protocol']}, seed {record['seed']}; "
              f"target: {record['target']}; {params}"), "",
             f"- flipped: {record['n_flipped']} of {record['n']}",
             f"- rho_adv (mean ||r||_2 of the flipped): {_fmt(record['rho_adv'])}",
             f"- normalised (mean ||r||_2 / ||x||_2): {_fmt(record['rho_adv_normalised'])}",
             f"- {record['norms']}", "",
             "| index | novel | score before | score after | threshold | flipped | L2 | Linf | iterations |"
             + (" class before -> after |" if record["target"] == "class" else ""),
             "|---:|:---:|---:|---:|---:|:---:|---:|---:|---:|" + (":---:|" if record["target"] == "class" else "")]
    for r in record["rows"]:
        classes = f" {r['class_before']} -> {r['class_after']} |" if "class_before" in r else ""
        lines.append(f"| {r['index']} | {'yes' if r['is_novel'] else 'no'} | {r['score_before']:.4g} | "
                     f"{r['score_after']:.4g} | {r['threshold']:.4g} | {'yes' if r['flipped'] else 'no'} | "
                     f"{r['l2']:.4g} | {r['linf']:.4g} | {r['iterations']} |{classes}")
    return "\n".join(lines) + "\n"


def _show(ax, img: np.ndarray) -> None:
    """An image in [0, 1], (C, H, W) with C = 1 (grey) or 3."""
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.transpose(1, 2, 0).clip(0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def example_grid(x: torch.Tensor, r: torch.Tensor, x_adv: torch.Tensor, rows: list[dict], title: str) -> bytes:
    """PNG bytes: originals, perturbations (each scaled so its largest |r| fills the grey range,
    mid-grey = 0) and perturbed images, normal and novel examples side by side."""
    plt = pyplot()

    normal = [i for i, row in enumerate(rows) if not row["is_novel"]]
    novel = [i for i, row in enumerate(rows) if row["is_novel"]]
    half = GRID_COLUMNS // 2
    cols = normal[:max(half, GRID_COLUMNS - len(novel))]
    cols = sorted(cols + novel[:GRID_COLUMNS - len(cols)])
    fig, axes = plt.subplots(3, len(cols), figsize=(1.7 * len(cols), 6.6), squeeze=False)
    for j, i in enumerate(cols):
        row, scale = rows[i], float(r[i].abs().max())
        shown_r = (r[i] / (2 * scale) + 0.5) if scale > 0 else torch.full_like(r[i], 0.5)
        _show(axes[0, j], ((x[i] + 1) / 2).numpy())
        _show(axes[1, j], shown_r.numpy())
        _show(axes[2, j], ((x_adv[i] + 1) / 2).numpy())
        kind = "novel" if row["is_novel"] else "normal"
        axes[0, j].set_title(f"#{row['index']} {kind}\nscore {row['score_before']:.4g}", fontsize=7)
        axes[1, j].set_xlabel(f"shown x{1 / (2 * scale) if scale > 0 else 1:.3g}\nL2 {row['l2']:.3g}", fontsize=7)
        classes = f"\nclass {row['class_before']} -> {row['class_after']}" if "class_before" in row else ""
        axes[2, j].set_xlabel(f"score {row['score_after']:.4g}{classes}\n"
                              f"{'flipped' if row['flipped'] else 'not flipped'}", fontsize=7)
    for i, label in enumerate(("original", "perturbation", "perturbed")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"{title}\nthreshold {rows[0]['threshold']:.4g}", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
