"""Where benchmark cells run: here, one after another (`serial`, the default, needs nothing), or as
Ray tasks (`ray`, the optional extra `noveltykit[ray]`) on a local Ray or a cluster.

The executor only decides where a function runs; what a cell is, how it is claimed and filed
(`cellstore`), and what it records are the runner's, the same under both. A Ray task that raises
is the function's business (the runner files the failure itself and returns it); a worker process
that dies is retried up to `retries` times by Ray and then handed back as an exception, so the
runner can file it as a failed cell while the rest of the sweep completes.
"""
from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

EXECUTORS = ("serial", "ray")
RAY_INSTALL = "pip install 'noveltykit[ray]'"
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a Ray node on 127.0.0.1 (Ray reads it at import)


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "serial"
    address: str | None = None  # a Ray cluster to join; None: RAY_ADDRESS, else a local Ray
    cpus_per_cell: int = 1  # Ray resources of one cell; its torch threads are set to match
    gpus_per_cell: float = 0.0
    retries: int = 2  # times a cell whose worker died is run again before it is filed as failed

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.kind!r}")
        if int(self.cpus_per_cell) < 1 or float(self.gpus_per_cell) < 0 or int(self.retries) < 0:
            raise ValueError(f"need cpus_per_cell >= 1, gpus_per_cell >= 0, retries >= 0; got "
                             f"{self.cpus_per_cell}, {self.gpus_per_cell}, {self.retries}")
        if self.kind == "serial" and (self.address or self.gpus_per_cell):
            raise ValueError("--address and --gpus-per-cell are for --executor ray")

    @property
    def joins_cluster(self) -> bool:
        return bool(self.address or os.environ.get("RAY_ADDRESS"))

    def check_installed(self) -> None:
        """Fail now, before any work, when this executor's extra is missing."""
        if self.kind == "ray":
            import_ray(local=not self.joins_cluster)


def import_ray(local: bool = True):
    """Ray, with usage reporting off; a clear message when the extra is not installed.

    local: a Ray started here will serve this machine only. Ray then takes the loopback address
    as the node's (its single-machine mode, read when Ray is imported), and every Ray server
    listens there, not on all interfaces."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray lowers its workers' priority (nice 15) by default: here the cells are the work, and on a
    # busy machine a niced worker took minutes to import torch
    os.environ.setdefault("RAY_worker_niceness", "0")
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        import ray
    except ImportError:
        raise ImportError(f"--executor ray needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


def worker_env(threads: int) -> dict:
    """A runtime_env for local workers: this process's import path (so detectors registered by a
    module the driver imported can be imported there too) and the cell's thread count."""
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                         "OMP_NUM_THREADS": str(threads), "RAY_USAGE_STATS_ENABLED": "0"}}


def start_ray(address: str | None = None, num_cpus: int | None = None, threads: int = 1) -> None:
    """Join `address` (or RAY_ADDRESS), else start a local Ray on the loopback interface, without
    the dashboard."""
    address = address or os.environ.get("RAY_ADDRESS")
    ray = import_ray(local=not address)
    common = {"log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **common)
        return
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, runtime_env=worker_env(threads), **common)
    if (ip := ray.util.get_node_ip_address()) != "127.0.0.1":
        warnings.warn(f"this local Ray serves on {ip}, not only on loopback: Ray was imported before "
                      f"noveltykit could set {LOOPBACK_ONLY}=0", stacklevel=2)


@contextmanager
def ray_session(ex: ExecutorConfig) -> Iterator[Any]:
    """Ray for the duration of a run: reuse one that is already up, else start it and stop it after."""
    ray = import_ray(local=not ex.joins_cluster)
    started = not ray.is_initialized()
    if started:
        start_ray(ex.address, threads=ex.cpus_per_cell)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _with_threads(fn: Callable, threads: int) -> Callable:
    def run(item, **shared):
        import torch
        torch.set_num_threads(threads)  # the cell's CPU share, as Ray reserved it
        return fn(item, **shared)
    run.__name__ = getattr(fn, "__name__", "cell")
    return run


# What a task returns when another process holds what it needs now (its cell, or a fit in a shared
# fit cache) and it was asked not to wait: it is run again, waiting, once the other items are done.
DEFERRED = "deferred"


def deferred(result) -> bool:
    return isinstance(result, str) and result == DEFERRED  # a string: it comes back from Ray as a copy


def busy_last(attempt: Callable[[Any, bool], Any], items: Iterable) -> Iterator[tuple[Any, Any]]:
    """(item, attempt(item, wait=False)) for every item, in order; an item it defers comes last, as
    (item, attempt(item, wait=True)). So a runner sharing its folder or fit cache with another
    process does all its other work before it waits for that process."""
    later = []
    for item in items:
        result = attempt(item, False)
        if deferred(result):
            later.append(item)
        else:
            yield item, result
    for item in later:
        result = attempt(item, True)
        if deferred(result):
            raise RuntimeError(f"{item!r} was deferred again when asked to wait")
        yield item, result


def run_each(fn: Callable, items: Iterable, ex: ExecutorConfig, on_done: Callable[[Any, Any], None],
             **shared) -> None:
    """fn(item, wait=..., **shared) for every item, on the executor; on_done(item, result) in this
    process as each finishes. Each item runs first with wait=False; the items it returns DEFERRED
    for run again with wait=True once no other item is left (under Ray, all of them at once).
    Under Ray, `shared` values are put in the object store once (a dataset is not copied per task),
    and `result` is the exception when a task could not finish (its worker died `retries` + 1
    times, or Ray failed it)."""
    if ex.kind == "serial":
        for item, result in busy_last(lambda item, wait: fn(item, wait=wait, **shared), items):
            on_done(item, result)
        return
    with ray_session(ex) as ray:
        task = ray.remote(num_cpus=ex.cpus_per_cell, num_gpus=ex.gpus_per_cell, max_retries=ex.retries,
                          retry_exceptions=False)(_with_threads(fn, ex.cpus_per_cell))
        refs = {name: ray.put(value) for name, value in shared.items()}
        pending = {task.remote(item, wait=False, **refs): (item, False) for item in items}
        later = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                item, waited = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a dead worker or a Ray failure: the caller files it
                    result = exc
                if deferred(result) and not waited:
                    later.append(item)
                    continue
                if deferred(result):
                    result = RuntimeError(f"{item!r} was deferred again when asked to wait")
                on_done(item, result)
            if not pending and later:  # nothing else to do: now wait for what the others hold
                pending, later = {task.remote(item, wait=True, **refs): (item, True) for item in later}, []
