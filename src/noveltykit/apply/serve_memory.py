"""`serve --memory`: the novelty memory shared by scoring and confirming, copy-on-write.

Scoring reads `bank.current`, one reference to a NoveltyMemory that is never changed in place, so
it takes no lock. A confirm (one at a time, under a lock scoring never takes) copies the memory,
adds the confirmed images to the copy on the model's worker thread (`run`: where every model call
is made), saves the copy's folder (swapped in whole by `fileio.atomic_dir`: a kill leaves the old
bank or the new one, so at most the confirm in progress is lost), and only then swaps the
reference. A confirm is answered once it is on disk; scores see it from the next batch on.
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..detectors import Detector
from ..detectors.memory import NoveltyMemory


class SharedMemory:
    """A NoveltyMemory folder as `serve` uses it (module docstring). `run(fn)`: runs `fn` where the
    model's calls are made and returns its result."""

    def __init__(self, detector: Detector, directory: str | Path, run: Callable[[Callable[[], Any]], Any]):
        self.directory = Path(directory)
        self.current = NoveltyMemory.open(detector, self.directory)
        self._run = run
        self._lock = threading.Lock()  # one confirm at a time
        self.saved_confirms = self.current.confirms

    def __len__(self) -> int:
        return len(self.current)

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.current.score(x)

    def confirm(self, x: np.ndarray) -> int:
        """Add `x` as confirmed novelties, saved before it returns; the bank's new size."""
        with self._lock:
            new = copy.copy(self.current)  # shares the tensors, which confirm never changes in place
            new.directory = None  # computed on the worker, saved here: scoring does not wait for the disk
            size = self._run(lambda: new.confirm(x))
            new.directory = self.directory
            new.save()
            self.current = new
            self.saved_confirms = new.confirms
            return size

    def flush(self) -> bool:
        """Wait for a confirm in progress, and save the bank if anything is not on disk yet (every
        confirm saves before it is answered, so normally nothing). True when it wrote."""
        with self._lock:
            if self.current.confirms == self.saved_confirms:
                return False
            self.current.save()
            self.saved_confirms = self.current.confirms
            return True
