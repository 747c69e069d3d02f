"""Detectors of "a user's own" for the executor tests (`bench --import plugin_detectors`), not tests.

Each appends one line per fit to the file named by its `log` parameter, so a test can count how
often a cell was really fitted, in whatever process ran it.
"""
import os

from noveltykit.detectors import register
from noveltykit.detectors.knn import KNNDetector


class _Logged(KNNDetector):
    def __init__(self, log: str = "", **kw):
        super().__init__(**kw)
        self.log = log

    def _note(self):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")


@register
class LoggedKNN(_Logged):
    name = "logged-knn"

    def _fit(self, x, x_val, y=None):
        self._note()
        super()._fit(x, x_val, y)


@register
class RaisingKNN(_Logged):
    name = "raising-knn"

    def _fit(self, x, x_val, y=None):
        self._note()
        raise ValueError("raising-knn always fails")


@register
class DyingKNN(_Logged):
    name = "dying-knn"

    def _fit(self, x, x_val, y=None):
        self._note()
        os._exit(3)  # the worker process dies mid-cell, as on an out-of-memory kill
