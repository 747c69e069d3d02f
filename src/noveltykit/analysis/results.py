"""Reading bench folders' results.json, and merging several folders' results into one table's worth."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def load_results(path: Path) -> list[dict]:
    """The finished cells of a results.json (empty when there is none)."""
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a noveltykit results file ({exc}); move it or pick another --out")


def read_runs(runs: Sequence[str | Path]) -> list[tuple[str | Path, list[dict]]]:
    """(folder, its finished cells) for each bench folder, in order; a folder without results is an error."""
    loaded = []
    for run in runs:
        found = load_results(Path(run) / "results.json")
        if not found:
            raise ValueError(f"{run}: no results.json with results")
        loaded.append((run, found))
    return loaded


def merge_results(loaded: Sequence[tuple[str | Path, list[dict]]], *, seeds: Sequence[int] | None = None,
                  classes: Sequence[int] | None = None, methods: Sequence[str] | None = None) -> list[dict]:
    """The cells of several folders (`read_runs`) as one list for one table: only `seeds` and
    `classes` when given; only `methods` when given, in that order (the table's columns), each of
    which must have results. Refused: folders of different datasets or protocols, and one cell
    (method, class, seed) in two folders, which would pass for two seeds in the mean ± std."""
    results, source = [], {}
    for run, found in loaded:
        results += found
        source.update({id(r): run for r in found})
    if seeds is not None:
        results = [r for r in results if r["seed"] in seeds]
    if classes is not None:
        results = [r for r in results if r["class"] in classes]
    if methods is not None:  # these columns, in this order
        methods = list(methods)
        missing = set(methods) - {r["method"] for r in results}
        if missing:
            raise ValueError(f"no results for method(s) {sorted(missing)} in these folders")
        results = sorted((r for r in results if r["method"] in methods), key=lambda r: methods.index(r["method"]))
    if len({(r["dataset"], r["protocol"]) for r in results}) > 1:
        raise ValueError("these folders hold different datasets or protocols; report them one by one")
    first = {}
    for r in results:
        if (key := (r["method"], r["class"], r["seed"])) in first:
            raise ValueError(f"{first[key]} and {source[id(r)]} both hold {r['method']} class {r['class']} "
                             f"seed {r['seed']}; report them apart, or narrow with --methods/--classes/--seeds")
        first[key] = source[id(r)]
    return results
