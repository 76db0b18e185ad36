"""The fuzzing targets: the readers of untrusted files, each fed one input of raw bytes.

A target returns normally or raises one of :data:`ALLOWED` (the documented "this file is
bad" errors, which the CLI turns into one line); anything else (an IndexError, a
MemoryError, an OverflowError, code being run) is a bug. The same functions run under
atheris (``tests/fuzz/run.py``, ``scripts/fuzz.sh``) and, over the kept seeds and crashers, in
the test suite (``tests/fuzz/test_fuzz_regressions.py``).

Targets: ``recordio`` (a ``.rec`` and its ``.idx`` opened as a dataset, a few items read),
``bin`` (a verification ``.bin``), ``pairs`` (an LFW ``pairs.txt``), ``landmarks`` (a
landmarks file and its paths checked against a root), ``image`` (one encoded image decoded).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from marginface.data.detection.align import read_landmarks
from marginface.data.formats.recordio import RecordDataset
from marginface.data.formats.verification import read_bin, read_pairs_txt
from marginface.data.transforms import decode_image, to_tensor
from marginface.files import resolve_inside

#: what a bad input may raise: ValueError (bad contents, named), OSError (unreadable image,
#: missing file), EOFError (a truncated record)
ALLOWED = (ValueError, OSError, EOFError)

#: keeps decoding fast: an image above this many pixels is a decompression bomb (an error at
#: twice this), as Pillow's default 89 M pixels is for real runs
FUZZ_MAX_PIXELS = 1 << 20

_ROOT = Path(
    tempfile.mkdtemp(
        prefix="marginface-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
)


atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def _setup() -> None:
    lfw = _ROOT / "lfw"
    for name in ("Ann", "Bob"):
        (lfw / name).mkdir(parents=True, exist_ok=True)
        for i in (1, 2):
            Image.new("RGB", (4, 4)).save(lfw / name / f"{name}_{i:04d}.png")


_setup()


def _split(data: bytes) -> tuple[bytes, bytes]:
    """Two files from one input: the first byte pair gives the first file's length."""
    if len(data) < 2:
        return data, b""
    cut = int.from_bytes(data[:2], "little") % (len(data) - 1)
    return data[2 : 2 + cut], data[2 + cut :]


def fuzz_recordio(data: bytes) -> None:
    rec_bytes, idx_bytes = _split(data)
    rec, idx = _ROOT / "f.rec", _ROOT / "f.idx"
    rec.write_bytes(rec_bytes)
    idx.write_bytes(idx_bytes)
    dataset = RecordDataset(rec, image_size=8)
    try:
        for i in range(min(len(dataset), 3)):
            dataset[i]
    finally:
        dataset.reader.close()


def fuzz_bin(data: bytes) -> None:
    path = _ROOT / "f.bin"
    path.write_bytes(data)
    read_bin(path)


def fuzz_pairs(data: bytes) -> None:
    path = _ROOT / "lfw" / "pairs.txt"
    path.write_bytes(data)
    read_pairs_txt(path, _ROOT / "lfw")


def fuzz_landmarks(data: bytes) -> None:
    path = _ROOT / "landmarks.txt"
    path.write_bytes(data)
    for relative in read_landmarks(path):
        resolve_inside(_ROOT / "lfw", relative, "landmarks")


def fuzz_image(data: bytes) -> None:
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    to_tensor(decode_image(data))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "recordio": fuzz_recordio,
    "bin": fuzz_bin,
    "pairs": fuzz_pairs,
    "landmarks": fuzz_landmarks,
    "image": fuzz_image,
}


def run_one(target: str, data: bytes) -> None:
    """Feed ``data`` to ``target`` (warnings silenced, Pillow's pixel limit at
    :data:`FUZZ_MAX_PIXELS`, both restored after); the allowed errors are swallowed, any
    other propagates."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = FUZZ_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TARGETS[target](data)
    except ALLOWED:
        pass
    finally:
        Image.MAX_IMAGE_PIXELS = limit
