"""`noveltykit score`: score image files and folders with a saved model.

Each file is read with the model's own preprocessing (its size, its channels: a grey image for a
colour model is repeated, a colour one for a grey model is turned to luminance). One row a file:
path, score, threshold, is_novel, error, converted (how the channels were changed:
"grey->colour", "colour->grey", or empty) and map (the path of the file's overlay with `maps`, else
empty). A file that cannot be read is a row with its error and no score; the run goes on. A path
that does not exist is such a row too; `missing_paths` names those of the paths given, for the
CLI's exit status. Rows come in the order the files were given (folders recursively, sorted).

With `maps` (a model that gives anomaly maps, `produces_maps`; any other is refused before any
scoring), each scored file's overlay is written below that folder, and with `maps_npy` its raw map
too (`score_maps`: where the files go). The overlay's scale is the model's pixel threshold;
`threshold` and `memory` change the image scores, never the maps.

`score_paths` also checks the share flagged against what the threshold promises (`drift`: the
threshold's quantile q flags about 1 - q of normal images; a one-sided binomial test): its rows
carry the check as `rows.flag_check`, and the CLI prints its line.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.folder import list_images
from ..detectors import Detector, load
from ..detectors.memory import NoveltyMemory
from ..fileio import atomic_write_bytes
from .drift import FlagCheck, expected_rate, flag_check
from .score_maps import MapWriter, check_maps
from .score_rows import COLUMNS, ScoreRow, read_converted

BATCH = 256


def expand(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders as every file under them (sorted, dot-files skipped)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += list_images(p)
        else:
            out.append(p)  # a missing file becomes a row with its error
    return out


def missing_paths(paths: list[str | Path]) -> list[Path]:
    """The paths given that do not exist (each is scored as a row with its error)."""
    return [p for p in map(Path, paths) if not p.exists()]


def check_map_options(maps, maps_npy: bool) -> None:
    if maps_npy and maps is None:
        raise ValueError("--maps-npy writes the raw maps beside the overlays: give --maps DIR too")


def score_files(detector: Detector, files: list[Path], threshold: float | str | None = None, progress: bool = True,
                batch: int = BATCH, memory: str | Path | NoveltyMemory | None = None,
                maps: str | Path | None = None, maps_npy: bool = False) -> list[ScoreRow]:
    """`memory`: a novelty memory's folder (or an open one): scores count its confirmed novelties.
    `maps`: a folder for each scored file's overlay (`maps_npy`: and its raw map as .npy); a
    detector without maps is refused here, before any work."""
    check_map_options(maps, maps_npy)
    writer = None if maps is None else MapWriter(detector, maps, files, npy=maps_npy)
    t = float(detector.threshold_ if threshold is None else detector.threshold_for(threshold))
    if memory is not None and not isinstance(memory, NoveltyMemory):
        if Path(memory).is_file():
            raise ValueError(f"{memory}: is a file, expected a novelty memory folder (serve --memory makes one)")
        if not Path(memory).is_dir():  # scoring reads a bank; only `serve` starts new ones
            raise ValueError(f"{memory}: no novelty memory there (confirm novelties through `serve --memory`)")
        memory = NoveltyMemory.open(detector, memory)
    scorer = detector.decision_function if memory is None else memory.score
    rows: list[ScoreRow] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if pending:
            batch_x = np.stack([a for _, a in pending])
            scores = scorer(batch_x)
            for (i, _), s in zip(pending, scores):
                rows[i].score, rows[i].is_novel = float(s), bool(s > t)
            if writer is not None:
                for (i, _), path in zip(pending, writer.write([i for i, _ in pending], batch_x)):
                    rows[i].map = str(path)
            pending.clear()

    for path in tqdm(files, desc="scoring", unit="img", disable=not progress):
        rows.append(ScoreRow(str(path), None, t, None))
        try:
            chw, rows[-1].converted = read_converted(detector, path)
            pending.append((len(rows) - 1, chw))
        except ValueError as exc:
            rows[-1].error = str(exc)
        if len(pending) >= batch:
            flush()
    flush()
    return rows


def rows_as_csv(rows: list[ScoreRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS)
    writer.writeheader()
    writer.writerows(r.as_dict() for r in rows)
    return buf.getvalue()


def write_rows(rows: list[ScoreRow], out: str | Path) -> None:
    """CSV or JSON lines, by the file's extension; written atomically."""
    out = Path(out)
    if out.suffix == ".jsonl":
        data = "".join(json.dumps(r.as_dict()) + "\n" for r in rows)
    elif out.suffix == ".csv":
        data = rows_as_csv(rows)
    else:
        raise ValueError(f"{out}: --out must end in .csv or .jsonl")
    atomic_write_bytes(out, data.encode())


class ScoredRows(list):
    """`score_paths`' rows (a list of ScoreRow), with `flag_check`: how many were flagged against the
    share the threshold promises (`drift.flag_check`)."""
    flag_check: FlagCheck | None = None


def check_flags(detector: Detector, rows: list[ScoreRow], threshold: float | str | None = None) -> FlagCheck:
    """The scored rows' flagged share against the threshold's expected rate (`drift`)."""
    scored = [r for r in rows if r.score is not None]
    return flag_check(sum(bool(r.is_novel) for r in scored), len(scored), *expected_rate(detector, threshold))


def score_paths(model: str | Path, paths: list[str | Path], *, out: str | Path | None = None,
                threshold: float | str | None = None, report: str | Path | None = None, progress: bool = True,
                memory: str | Path | None = None, maps: str | Path | None = None,
                maps_npy: bool = False) -> ScoredRows:
    if out is not None and Path(out).suffix not in (".csv", ".jsonl"):
        raise ValueError(f"{out}: --out must end in .csv or .jsonl")  # before any work
    check_map_options(maps, maps_npy)
    if maps is not None and Path(maps).is_file():
        raise ValueError(f"{maps}: is a file, expected a folder for the maps (made if new)")
    detector = load(model)
    if maps is not None:
        check_maps(detector, model)
    files = expand(paths)
    if not files:
        raise ValueError(f"no files to score under {', '.join(map(str, paths))}")
    rows = ScoredRows(score_files(detector, files, threshold, progress, memory=memory, maps=maps,
                                  maps_npy=maps_npy))
    rows.flag_check = check_flags(detector, rows, threshold)
    if out is not None:
        write_rows(rows, out)
    if report is not None:
        from .score_page import write_report  # matplotlib only when a page is asked for
        write_report(report, rows, detector)
    return rows
