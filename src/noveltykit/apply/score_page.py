"""`score --report DIR`: one HTML page (index.html, self-contained) with the histogram of the
scores and the threshold, and galleries of the most novel and the most normal images, each
with its score; files that could not be read are listed with their errors. A model that gives
anomaly maps shows each listed image's overlay beside it (`score_maps`: the model's fixed scale,
its pixel threshold outlined)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..analysis.plots import pyplot
from ..fileio import atomic_write_bytes
from .score_maps import gives_maps, overlays
from .score_rows import ScoreRow, read_for

GALLERY = 16  # images in each gallery
THUMB = 96  # pixels a side


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _histogram(scores: np.ndarray, threshold: float) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(scores, bins=min(60, max(10, len(scores) // 5)), color="C0")
    ax.axvline(threshold, c="C3", lw=1.5, label=f"threshold {threshold:.4g}")
    ax.set(xlabel="novelty score (higher = more novel)", ylabel="images")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _thumb(hwc: np.ndarray) -> str:
    """An image (uint8 (H, W, C)) enlarged for the page."""
    im = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
    buf = io.BytesIO()
    im.resize((THUMB, THUMB), Image.NEAREST).save(buf, format="PNG")
    return _png_data_uri(buf.getvalue())


def _gallery(detector, rows: list[ScoreRow], title: str) -> str:
    """The images as the model saw them (its size and channels), each with its overlay beside it
    when the model gives maps."""
    chw = np.stack([read_for(detector, Path(r.path)) for r in rows])
    drawn = overlays(detector, chw)[0] if gives_maps(detector) else [None] * len(rows)
    cells = "".join(
        f'<figure><img src="{_thumb(x.transpose(1, 2, 0))}" alt="">'
        + ("" if o is None else f'<img class="map" src="{_thumb(o)}" alt="anomaly map">')
        + f'<figcaption>{r.score:.4g}{" novel" if r.is_novel else ""}<br>'
          f'<small>{html.escape(Path(r.path).name)}</small></figcaption></figure>'
        for r, x, o in zip(rows, chw, drawn))
    return f"<h2>{html.escape(title)}</h2><div class='g'>{cells}</div>"


def write_report(out: str | Path, rows: list[ScoreRow], detector) -> Path:
    out = Path(out)
    scored = sorted((r for r in rows if r.score is not None), key=lambda r: r.score, reverse=True)
    failed = [r for r in rows if r.error]
    threshold = rows[0].threshold if rows else float(detector.threshold_)
    parts = [f"<h1>noveltykit scores: <code>{html.escape(detector.name)}</code></h1>",
             f"<p>{len(scored)} images scored, {sum(r.is_novel for r in scored)} above the threshold "
             f"{threshold:.4g}; {len(failed)} could not be read.</p>"]
    if gives_maps(detector):
        parts.append(f"<p>Beside each image, its anomaly map on the model's scale: dark at a typical normal "
                     f"patch, the pixel threshold {float(detector.pixel_threshold_):.4g} mid-scale, the pixels "
                     "above it outlined in white.</p>")
    if scored:
        hist = _histogram(np.array([r.score for r in scored]), threshold)
        parts.append(f'<img src="{_png_data_uri(hist)}" alt="histogram of scores">')
        parts.append(_gallery(detector, scored[:GALLERY], "most novel"))
        parts.append(_gallery(detector, scored[::-1][:GALLERY], "most normal"))
    if failed:
        items = "".join(f"<li>{html.escape(r.error)}</li>" for r in failed)
        parts.append(f"<h2>not scored</h2><ul>{items}</ul>")
    style = ("body{font-family:sans-serif;margin:2em}.g{display:flex;flex-wrap:wrap;gap:8px}"
             "figure{margin:0;text-align:center;font-size:12px}img{image-rendering:pixelated}"
             "figure img.map{margin-left:2px}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>noveltykit scores</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_bytes(out / "index.html", page.encode())
    return out / "index.html"
