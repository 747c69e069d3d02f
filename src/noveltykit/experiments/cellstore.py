"""A benchmark folder that many processes may write at once, and that no crash can spoil.

    cells/<key>.json          one finished cell, written atomically; <key> hashes what defines it
    cells/<key>.failed.json   the last failure of a cell (error, traceback); gone once it succeeds
    locks/<key>.lock          flock-held by the process running that cell: no cell runs twice at once
    .lock                     flock-held while experiment.json and results.json are rewritten
    experiment.json           what every cell here shares, written with the first finished cell
    results.json              all finished cells (and the failures), rebuilt from cells/ each time

The kernel releases a dead process's locks, so a SIGKILLed run leaves nothing locked; its cell is
simply not in cells/ and the next run (or a waiting one) does it.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..analysis.results import load_results
from ..fileio import atomic_write_json, file_lock

# Fields that define the experiment: every cell under one folder must agree on them.
EXPERIMENT_FIELDS = ("dataset", "protocol", "val_fraction", "image_size")
EXPERIMENT_DEFAULTS = {"image_size": 32}  # what a folder written before the field existed ran at
FAILED_SUFFIX = ".failed.json"


def cell_key(record: dict) -> tuple:
    return (record["dataset"], record["protocol"], record["class"], record["seed"], record["method"])


def cell_id(dataset: str, protocol: str, cls: int, seed: int, method: str) -> str:
    """The file name of a cell: a hash of the same fields as `cell_key`."""
    text = json.dumps([dataset, protocol, int(cls), int(seed), method])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def record_id(record: dict) -> str:
    return cell_id(*cell_key(record))


class CellStore:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.cells = self.out / "cells"
        self.results_path = self.out / "results.json"
        self.experiment_path = self.out / "experiment.json"

    # --- reading ---------------------------------------------------------------------------------
    def is_done(self, key: str) -> bool | None:
        """True when cell `key` is finished, else None (`fileio.run_once`'s `finished`)."""
        return (self.cells / f"{key}.json").is_file() or None

    def done_ids(self) -> set[str]:
        return {p.name[:-len(".json")] for p in self.cells.glob("*.json")
                if not p.name.endswith(FAILED_SUFFIX)}

    def _read_all(self, failed: bool) -> list[dict]:
        paths = [p for p in self.cells.glob("*.json") if p.name.endswith(FAILED_SUFFIX) == failed]
        records = [json.loads(p.read_text()) for p in paths]
        return sorted(records, key=lambda r: (r.get("finished", ""), cell_key(r)))

    def results(self) -> list[dict]:
        return self._read_all(failed=False)

    def failures(self) -> list[dict]:
        return self._read_all(failed=True)

    def check_experiment(self, experiment: dict) -> None:
        """Refuse a run whose experiment differs from the one recorded here (read only)."""
        if not self.experiment_path.exists():
            return
        before = json.loads(self.experiment_path.read_text())
        was = {**EXPERIMENT_DEFAULTS, **before}
        diff = {k: (was.get(k), v) for k, v in experiment.items() if was.get(k) != v}
        if diff:
            raise ValueError(f"{self.out} holds results of another experiment ({diff}, was -> now); "
                             "pick another --out")

    # --- writing ---------------------------------------------------------------------------------
    @contextmanager
    def folder_lock(self) -> Iterator[None]:
        with file_lock(self.out / ".lock"):
            yield

    def lock_path(self, key: str) -> Path:
        """The lock held by the process running cell `key` (`fileio.run_once`)."""
        return self.out / "locks" / f"{key}.lock"

    def adopt_legacy(self) -> None:
        """A folder from before cells/ existed: split its results.json into cell files, once."""
        with self.folder_lock():
            if self.cells.exists() or not self.results_path.exists():
                return
            for record in load_results(self.results_path):
                atomic_write_json(self.cells / f"{record_id(record)}.json", record)

    def add(self, record: dict, experiment: dict) -> None:
        """File a finished cell: experiment record (first cell only), cell file, results.json."""
        key = record_id(record)
        with self.folder_lock():
            self.check_experiment(experiment)
            if not self.experiment_path.exists():
                atomic_write_json(self.experiment_path, experiment)
            atomic_write_json(self.cells / f"{key}.json", record)
            (self.cells / f"{key}{FAILED_SUFFIX}").unlink(missing_ok=True)
            self._rebuild()

    def add_failure(self, failure: dict) -> None:
        with self.folder_lock():
            atomic_write_json(self.cells / f"{record_id(failure)}{FAILED_SUFFIX}", failure)
            self._rebuild()

    def _rebuild(self) -> None:
        atomic_write_json(self.results_path, {"results": self.results(), "failed": self.failures()})
