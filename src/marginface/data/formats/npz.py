"""Reading named arrays from an untrusted ``.npz`` (a gallery from ``marginface embed``).

:func:`numpy.load` allocates what a member's ``.npy`` header declares before reading it, so a
few hundred bytes declaring 2^40 x 4 floats ask for 16 TiB. :func:`read_npz` reads each
header first and checks the array it declares against the bytes its member holds (and the
member's size against the file's: a stored member cannot be larger than the file, a deflated
one not more than deflate's 1032:1 larger than its compressed bytes) before allocating
anything; object arrays are refused (nothing is unpickled), and so is an empty array with a
dimension above 1 (no loop over 2^40 empty rows). Any of these, or a file that is not a zip
of ``.npy`` members, is a :class:`ValueError` saying that the file is not a ``what``.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

#: deflate's largest expansion (a member declaring more is damaged or hostile)
DEFLATE_MAX_RATIO = 1032


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError


def _member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, what: str
) -> np.ndarray:
    key = info.filename[: -len(".npy")]
    if info.compress_type == zipfile.ZIP_STORED:
        most = file_size
    else:
        most = DEFLATE_MAX_RATIO * info.compress_size
    if info.file_size > most:
        raise ValueError(
            f"its member {key!r} declares {_human(info.file_size)} from {_human(most)} of file"
        )
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"its member {key!r} is a .npy of version {version}")
        if dtype.hasobject:
            raise ValueError(f"its member {key!r} holds Python objects (never unpickled)")
        if any(n < 0 for n in shape):
            raise ValueError(f"its member {key!r} declares the shape {shape}")
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        held = info.file_size - stream.tell()
        if nbytes != held:
            raise ValueError(
                f"its member {key!r} declares a {dtype} array of shape {shape} "
                f"({_human(nbytes)}) but holds {_human(max(held, 0))}"
            )
        if count == 0 and any(n > 1 for n in shape):
            raise ValueError(f"its member {key!r} is an empty array of shape {shape}")
        buffer = bytearray(nbytes)
        if stream.readinto(buffer) != nbytes:
            raise ValueError(f"its member {key!r} is truncated")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(
    path: str | os.PathLike, keys: list[str], what: str = "npz file"
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` at ``path``, checked as the module says.

    A missing file is a :class:`FileNotFoundError`; a missing key, or anything wrong with the
    file, a :class:`ValueError` naming the file (``PATH is not a WHAT: ...``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            out = {}
            for key in keys:
                info = members.get(f"{key}.npy")
                if info is None:
                    raise ValueError(f"it has no {key!r} array")
                out[key] = _member(archive, info, path.stat().st_size, what)
            return out
    except (zipfile.BadZipFile, zlib.error, struct.error, EOFError, ValueError, OSError,
            NotImplementedError, RuntimeError) as exc:  # fmt: skip
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a {what}: {exc}") from None
