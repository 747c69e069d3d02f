"""The on-disk cache: where it lives, atomic writes, and checking what is already there.

Every file enters the cache through `store_verified`: bytes go to a temp file in the same
directory, are hashed on the way, and only a file with the right checksum is renamed into place
(`os.replace` is atomic on one filesystem). A killed fetch therefore never leaves a half file
under the final name.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterable

from ..fileio import atomic_write
from .checksums import ChecksumError, FileSpec, size_error, verify_file

ENV_CACHE = "NOVELTYKIT_CACHE"


def cache_root() -> Path:
    """`$NOVELTYKIT_CACHE`, else `~/.cache/noveltykit`."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "noveltykit"


def dataset_cache_dir(key: str) -> Path:
    """Where one dataset's files live, e.g. `<cache>/mnist` (not created here)."""
    return cache_root() / key


def store_verified(dest: str | Path, chunks: Iterable[bytes], spec: FileSpec) -> Path:
    """Write `chunks` to `dest` atomically, but only if their size and checksum are the ones `spec`
    expects. With a known size, reading stops one chunk past it: a decompression bomb never fills
    the disk."""
    h = hashlib.new(spec.algorithm)
    total = 0
    with atomic_write(dest) as f:
        for chunk in chunks:
            total += len(chunk)
            if spec.size is not None and total > spec.size:
                raise size_error(spec.name, spec, f"more than {spec.size:,}")
            h.update(chunk)
            f.write(chunk)
        if spec.size is not None and total != spec.size:
            raise size_error(spec.name, spec, f"{total:,}")
        if h.hexdigest() != spec.digest:
            raise ChecksumError(
                f"{spec.name}: {spec.algorithm} mismatch (expected {spec.digest}, got {h.hexdigest()})")
    return Path(dest)


def check_cached(path: str | Path, spec: FileSpec) -> bool:
    """True if `path` holds a good copy. A corrupt copy is deleted, with a warning, so it is fetched again."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        verify_file(path, spec)
    except ChecksumError as e:
        warnings.warn(f"corrupt cached file deleted, it will be fetched again: {e}", stacklevel=2)
        path.unlink(missing_ok=True)
        return False
    return True
