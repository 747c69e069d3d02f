"""The IDX format of MNIST and Fashion-MNIST.

Layout: two zero bytes, a type byte, a byte with the number of dimensions, one big-endian uint32
per dimension, then the values, big-endian, row-major.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# type byte -> big-endian numpy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(ValueError):
    """A file that is not a well-formed IDX file."""


def parse_idx(data: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array with native byte order."""
    if len(data) < 4:
        raise IdxError(f"{where}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IdxError(f"{where}: bad magic {data[:4].hex()} (an IDX file starts with two zero bytes; "
                       "is it still gzipped?)")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        raise IdxError(f"{where}: unknown IDX type byte 0x{type_code:02x}")
    if ndim == 0:
        raise IdxError(f"{where}: IDX file with zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{where}: header needs {header} bytes, file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxError(f"{where}: shape {shape} needs {expected} data bytes, file has {len(data) - header} "
                       "(truncated or corrupt)")
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # native order, writable


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(path.read_bytes(), str(path))
