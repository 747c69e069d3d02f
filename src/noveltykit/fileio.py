"""Files that survive crashes and shared folders: atomic writes of files and whole folders, safe
names from user text, guarded deletes, and inter-process locks.

Atomic writes: a crash mid-write never leaves a half file under the final name.

Bytes go to a temp file in the same directory and are renamed into place (`os.replace` is atomic
on one filesystem). Temp names carry the writer's pid, so later writes can sweep up the temps of
killed writers without touching a live one's.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

PART_SUFFIX = ".part"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_parts(dest: Path) -> None:
    """Delete temp files that earlier, killed writes of `dest` left behind.

    Temp names carry the writer's pid, so a temp whose writer is still running is left alone.
    """
    prefix = f".{dest.name}."
    for part in dest.parent.glob(f"{prefix}*{PART_SUFFIX}"):
        pid_text = part.name[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            if part.is_dir():  # a folder written by `atomic_dir`
                shutil.rmtree(part, ignore_errors=True)
            else:
                with suppress(FileNotFoundError):
                    part.unlink()


@contextmanager
def atomic_write(dest: str | Path) -> Iterator[BinaryIO]:
    """Open a temp file next to `dest`; on success rename it to `dest`, on any error delete it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid is in the name so that later writes can tell abandoned temps from live ones
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, dest)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _remove_stale_parts(dest)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


# --- folders written whole ------------------------------------------------------------------------

def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `dest`; on success it takes `dest`'s place whole.

    A replaced `dest` is swapped out in one step where the kernel can (Linux), so a reader or a
    kill sees the old folder or the new one, never half of each. Elsewhere the old folder is moved
    aside first: a kill between the two renames leaves it beside `dest` as `.NAME.*.old`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}"
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():  # contents reach the disk before the name points at them
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if not dest.exists():
            os.rename(tmp, dest)
        elif _exchange(tmp, dest):
            shutil.rmtree(tmp)  # now holds the old folder
        else:
            old = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.old"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_stale_parts(dest)


# --- names and deletions from user text -------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def check_replaceable(directory: Path, own_files: tuple[str, ...], what: str) -> None:
    """Refuse to replace a folder (as `atomic_dir` does) unless it is new, empty or holds only
    `own_files`: a folder holding anything else is never swapped away."""
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"{directory}: exists and is not a folder; {what} is a folder")
        others = sorted(p.name for p in directory.iterdir() if p.name not in own_files)
        if others:
            raise ValueError(f"{directory}: holds other files ({', '.join(others[:3])}); use a new or empty "
                             f"folder, or one holding only {what}")


def safe_name(text: str, max_len: int = 48) -> str:
    """A file name made from user text: safe characters only, then a short hash of the whole text.

    No '/', no '..' component, never hidden or absolute, and two texts that read alike after
    cleaning (`a/b`, `a_b`) still get different names.
    """
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    cleaned = _SAFE.sub("_", text).strip("._-")[:max_len]
    return f"{cleaned}-{digest}" if cleaned else digest


def remove_tree_inside(root: str | Path, path: str | Path) -> None:
    """`rm -r path`, but only when `path` lies strictly inside `root` (links resolved)."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if path_r == root_r or root_r not in path_r.parents:
        raise ValueError(f"refusing to delete {path}: it is not inside {root}")
    shutil.rmtree(path_r, ignore_errors=True)


# --- locks ----------------------------------------------------------------------------------------

@contextmanager
def file_lock(path: str | Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock (flock) on `path` while inside; yields whether it was got.

    The kernel drops the lock when its holder dies, so a killed process never leaves a folder
    locked. Non-blocking: yields False at once when another process holds it.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


T = TypeVar("T")
BUSY, DONE, RAN = "busy", "done", "ran"


def run_once(lock: str | Path, finished: Callable[[], T | None], work: Callable[[], T], *, wait: bool = True
             ) -> tuple[str, T | None]:
    """Do a piece of work that several processes may share (a benchmark cell, a sweep trial, a
    teacher) at most once: under `lock`, `finished()` is asked first and `work()` runs only when
    it gives None. Returns (DONE, what finished() gave), (RAN, what work() gave), or, when another
    process holds the lock and `wait` is False, (BUSY, None) at once. A dead holder's lock is
    dropped by the kernel, so its work is simply done again by the next one."""
    with file_lock(lock, blocking=wait) as mine:
        if not mine:
            return BUSY, None
        done = finished()
        if done is not None:
            return DONE, done
        return RAN, work()
