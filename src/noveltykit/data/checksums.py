"""Known files and their checksums; streamed hashing so large files never sit in memory."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

CHUNK = 1 << 20  # 1 MiB reads: fast, and memory stays flat for any file size


class ChecksumError(Exception):
    """A file's bytes are not the ones we expected."""


@dataclass(frozen=True)
class FileSpec:
    """One file a dataset needs, under its standard name, with the checksum of its raw bytes.

    sha256 is preferred; md5 is accepted because some datasets only publish md5. `size` (bytes),
    when known, bounds every read: a file or a decompression stream is never read past it.
    """

    name: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None

    @property
    def algorithm(self) -> str:
        return "sha256" if self.sha256 else "md5"

    @property
    def digest(self) -> str:
        digest = self.sha256 or self.md5
        if not digest:
            raise ValueError(f"{self.name}: no checksum known")
        return digest.lower()


def iter_chunks(f: BinaryIO, size: int = CHUNK, limit: int | None = None) -> Iterator[bytes]:
    """Chunks of `f` until its end, or until `limit` bytes in all have been read."""
    left = limit
    while left is None or left > 0:
        chunk = f.read(size if left is None else min(size, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter_chunks(f):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    return file_hash(path, "sha256")


def file_md5(path: str | Path) -> str:
    return file_hash(path, "md5")


def size_error(name: str | Path, spec: FileSpec, got: str) -> ChecksumError:
    return ChecksumError(f"{name}: {got} bytes, expected {spec.size:,} (size mismatch)")


def verify_file(path: str | Path, spec: FileSpec) -> None:
    """Raise ChecksumError unless the file at `path` has the size and checksum `spec` expects."""
    if spec.size is not None and (size := Path(path).stat().st_size) != spec.size:
        raise size_error(path, spec, f"{size:,}")
    got = file_hash(path, spec.algorithm)
    if got != spec.digest:
        raise ChecksumError(f"{path}: {spec.algorithm} mismatch (expected {spec.digest}, got {got})")
