"""Micro-batching: the images of concurrent requests scored in one model call, by one thread.

    batcher = MicroBatcher(detector.decision_function, max_batch=64, max_wait_s=0.005)
    future = batcher.submit(x)       # x: (n, C, H, W); the future's result: its n scores, in order
    future = batcher.call(fn)        # any other work on the model (maps, a memory's confirm), alone
    batcher.close()                  # what was submitted before is still done; then the thread ends

One worker thread owns every model call. It takes the oldest request, then gathers the ones
queued behind it until the batch holds `max_batch` images or `max_wait_s` has passed since it
took the first, calls `score` once on them all and gives each request its own scores. It waits
only for requests on their way: those announced by `arriving()` (the server announces each score
request as it comes in, `CountArrivals`, and the request's `submit` ends its announcement) and not
yet queued. With none on the way it does not wait, so a lone client pays no `max_wait_s`; and
while a call runs, new requests queue up, so a busy server batches without waiting at all. A request is
never split: one larger than `max_batch` is a batch of its own, and a request that would take a
batch past `max_batch` waits for the next one. `max_batch=1`: one request a call, as a lock would
do. When a batched call raises, each of its requests is scored alone, so a request that fails
fails alone.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from .limits import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS

_STOP = object()
_POLL_S = 0.0005  # how often a gathering batch looks whether requests are still on their way


class Stopped(RuntimeError):
    """The batcher is closed (the server is stopping): no new work is taken."""


@dataclass
class _Job:
    future: Future
    images: np.ndarray | None = None  # a scoring request
    fn: Callable[[], Any] | None = None  # other work, run alone


class Arrival:
    """A request announced to the batcher (`MicroBatcher.arriving`); `done()` ends it, once."""

    def __init__(self, batcher: MicroBatcher):
        self._batcher, self._done = batcher, False

    def done(self) -> None:
        if not self._done:
            self._done = True
            self._batcher._arrived()


class CountArrivals:
    """Pure ASGI middleware: each request to `paths` is announced to the batcher as it comes in
    (`scope["state"]["arrival"]`, for its handler to pass to `submit`) and its announcement ends,
    at the latest, with its answer."""

    def __init__(self, app, batcher: MicroBatcher, paths: frozenset = frozenset({"/v1/score"})):
        self.app, self.batcher, self.paths = app, batcher, frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.paths or self.batcher.closed:
            return await self.app(scope, receive, send)
        arrival = self.batcher.arriving()
        scope.setdefault("state", {})["arrival"] = arrival
        try:
            await self.app(scope, receive, send)
        finally:
            arrival.done()


class MicroBatcher:
    """Scores requests' images in batches on one worker thread (module docstring). `on_batch(images,
    requests)` is told each batched call's size (for the metrics), from the worker thread."""

    def __init__(self, score: Callable[[np.ndarray], Any], *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_s: float = DEFAULT_MAX_WAIT_MS / 1000,
                 on_batch: Callable[[int, int], None] | None = None, name: str = "noveltykit-model"):
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1 image, got {max_batch}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait must be 0 or more, got {max_wait_s * 1000:g} ms")
        self.score, self.max_batch, self.max_wait_s = score, int(max_batch), float(max_wait_s)
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # no job is queued behind the stop
        self._closed = False
        self._arriving = 0  # requests announced and not yet submitted
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # --- the callers' side --------------------------------------------------------------------------
    def arriving(self) -> Arrival:
        """Announce a request that will submit soon: a batch being gathered waits for it (up to
        max_wait). End it with `Arrival.done()` (`submit` and `call` do) in every case."""
        with self._lock:
            self._arriving += 1
        return Arrival(self)

    def _arrived(self) -> None:
        with self._lock:
            self._arriving -= 1

    def submit(self, images: np.ndarray, arrival: Arrival | None = None) -> Future:
        """Score `images` (n, C, H, W) with others queued now; the future gives its n scores."""
        try:
            if len(images) == 0:
                raise ValueError("no images to score")
            return self._put(_Job(Future(), images=images))
        finally:
            if arrival is not None:
                arrival.done()

    def call(self, fn: Callable[[], Any], arrival: Arrival | None = None) -> Future:
        """Run `fn()` on the worker thread, between batches; the future gives what it returns."""
        try:
            return self._put(_Job(Future(), fn=fn))
        finally:
            if arrival is not None:
                arrival.done()

    def _put(self, job: _Job) -> Future:
        with self._lock:
            if self._closed:
                raise Stopped("the server is stopping: it takes no new work")
            self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking requests, finish the queued ones, end the thread; False if it is still busy
        after `timeout` seconds."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the worker ---------------------------------------------------------------------------------
    def _work(self) -> None:
        carried = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is _STOP:
                return
            if not job.future.set_running_or_notify_cancel():  # its caller is gone
                continue
            if job.fn is not None:
                self._run(job)
                continue
            batch, size = [job], len(job.images)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    if left > 0 and self._arriving > 0:  # someone is on the way: wait a little for them
                        nxt = self._queue.get(timeout=min(left, _POLL_S))
                    else:  # only what is queued already
                        nxt = self._queue.get_nowait()
                except queue.Empty:
                    if left > 0 and self._arriving > 0:
                        continue
                    break
                if nxt is _STOP or nxt.fn is not None or size + len(nxt.images) > self.max_batch:
                    carried = nxt  # next time round: after this batch
                    break
                if nxt.future.set_running_or_notify_cancel():
                    batch.append(nxt)
                    size += len(nxt.images)
            self._score(batch)

    def _run(self, job: _Job) -> None:
        try:
            result = job.fn()
        except BaseException as exc:  # noqa: BLE001  (the caller gets it)
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _score(self, batch: list[_Job]) -> None:
        x = batch[0].images if len(batch) == 1 else np.concatenate([j.images for j in batch])
        try:
            scores = np.asarray(self.score(x))
            if len(scores) != len(x):
                raise RuntimeError(f"the model gave {len(scores)} scores for {len(x)} images")
        except BaseException as exc:  # noqa: BLE001
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
            else:  # each alone: only the request that fails gets the error
                for job in batch:
                    self._score([job])
            return
        if self.on_batch is not None:
            try:
                self.on_batch(len(x), len(batch))
            except Exception:  # noqa: BLE001  (a metric must not fail a request)
                pass
        start = 0
        for job in batch:
            n = len(job.images)
            job.future.set_result(scores[start:start + n])
            start += n
