"""Atomic file writes: a crash mid-write never leaves a half file under the final name.

Bytes go to a temp file in the same directory and are renamed into place (`os.replace` is atomic
on one filesystem). Temp names carry the writer's pid, so later writes can sweep up the temps of
killed writers without touching a live one's.
"""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Iterator

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
