"""Hostile verification ``.bin`` files (issue 22's attack on the restricted unpickler), and a
runner that feeds them to ``read_bin`` and to ``marginface eval --pairs`` in a child process,
so that a crash (SIGSEGV), a hang or a huge allocation fails a test instead of pytest.

    python tests/_support/hostile_bins.py CHECKPOINT FOLDER [CASE ...]

prints one JSON line per case: what ``read_bin`` raised (or the number of pairs it read), its
tracemalloc peak, and the exit code and stderr lines of ``marginface eval``.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path

import numpy as np


def tiny_png(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Call:
    """Pickles as ``func(*args)``: a file that calls ``func`` (numpy.ndarray ...) itself."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _bin(images: list, issame: object, protocol: int = 2) -> bytes:
    return pickle.dumps((images, issame), protocol=protocol)


def _nested_lists(depth: int) -> bytes:
    """([png, png], [[[...]]]) with the flags nested ``depth`` lists deep, by the stack."""
    head = pickle.dumps(([tiny_png(0), tiny_png(1)],), protocol=4)[:-2]  # drop TUPLE1 STOP
    return head + b"]" * depth + b"a" * (depth - 1) + b"\x86."


def _deep_list(depth: int) -> list:
    value: list = [True]
    for _ in range(depth - 1):
        value = [value]
    return value


def _chained_lists(depth: int) -> bytes:
    """The same nesting built through the memo: each list holds the one stored before it."""
    body = bytearray(b"\x80\x04]r\x00\x00\x00\x00")
    for i in range(1, depth):
        body += b"]j" + (i - 1).to_bytes(4, "little") + b"ar" + i.to_bytes(4, "little")
    return bytes(body) + b"."


def _memo_copies(chars: int, copies: int) -> bytes:
    """One latin-1 text, then ``copies`` calls of _codecs.encode on it through the memo: each
    call would allocate the text again, for 8 bytes of file."""
    text = ("\xe9" * chars).encode("utf-8")
    out = b"\x80\x02c_codecs\nencode\nq\x00X" + len(text).to_bytes(4, "little") + text
    out += b"q\x01X\x06\x00\x00\x00latin1q\x02]q\x03("
    return out + b"h\x00h\x01h\x02\x86R" * copies + b"e."


def cases() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, what ``read_bin`` must do: ``ok N`` (N pairs), or ``refused`` /
    ``damaged`` / ``contents`` followed by a fragment of the error message)."""
    a, b = tiny_png(0), tiny_png(1)
    nd = np.ndarray
    out = {
        "ndarray-object-buffer": (
            _bin([a, b], Call(nd, (1,), "O", b"A" * 8)),
            "refused a call of numpy.ndarray",
        ),
        "ndarray-negative-offset": (
            _bin([Call(nd, (64,), "u1", b"xy", -(2**40)), b], [True]),
            "refused a call of numpy.ndarray",
        ),
        "ndarray-offset-minus-32": (
            _bin([Call(nd, (32,), "u1", b"x" * 8, -32), b], [True]),
            "refused a call of numpy.ndarray",
        ),
        "ndarray-object-array": (
            _bin([a, b], Call(nd, (3,), "O")),
            "refused a call of numpy.ndarray",
        ),
        "ndarray-zero-stride-2^30": (
            _bin([a, b], Call(nd, (2**30,), "?", b"\x01", 0, (0,))),
            "refused a call of numpy.ndarray",
        ),
        "ndarray-zero-stride-10^12": (
            _bin([a, b], Call(nd, (10**12,), "?", b"\x01", 0, (0,))),
            "refused a call of numpy.ndarray",
        ),
        "object-dtype-reconstruct": (
            _bin([a, b], np.array([None, None, None], dtype=object)),
            "refused numpy.dtype(",
        ),
        "shape-beyond-data": (
            _bin([a, b], np.array([True])).replace(b"K\x01\x85", b"J\x00\x00\x00\x40\x85"),
            "refused an array of shape (1073741824,)",
        ),
        "empty-array-10^12-rows": (
            _bin([a, b], np.zeros((1, 0), dtype=bool)).replace(
                b"K\x01K\x00\x86", b"\x8a\x06\x00\x10\xa5\xd4\xe8\x00K\x00\x86"
            ),
            "refused an empty array of shape (1000000000000, 0)",
        ),
        "bool-array-byte-0x41": (
            _bin([a, b], np.array([True])).replace(b"X\x01\x00\x00\x00\x01", b"X\x01\x00\x00\x00A"),
            "refused a bool array holding bytes other than 0 and 1",
        ),
        "bytearray8-2^40": (
            b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"xy.",
            "damaged BYTEARRAY8 at byte 2 declares 1099511627776 bytes, 3 are left",
        ),
        "bytearray8-2^31": (
            b"\x80\x05\x96" + (2**31).to_bytes(8, "little") + b"xy.",
            "damaged BYTEARRAY8 at byte 2 declares 2147483648 bytes, 3 are left",
        ),
        "binbytes8-2^40": (
            b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"xy.",
            "damaged BINBYTES8 at byte 2 declares 1099511627776 bytes",
        ),
        "binunicode8-2^40": (
            b"\x80\x04\x8d" + (2**40).to_bytes(8, "little") + b"xy.",
            "damaged BINUNICODE8 at byte 2 declares 1099511627776 bytes",
        ),
        "long4-2^31": (
            b"\x80\x02\x8b\xff\xff\xff\x7fxy.",
            "damaged LONG4 at byte 2 declares 2147483647 bytes",
        ),
        "frame-2^40": (
            b"\x80\x04\x95" + (2**40).to_bytes(8, "little") + b"N.",
            "damaged FRAME at byte 2 declares 1099511627776 bytes",
        ),
        # 100,000 lists cost more than their 100,000 bytes may build, before they nest
        "flags-nested-100000-deep": (_nested_lists(100_000), "refused more than 8 bytes"),
        "flags-nested-33-deep": (_nested_lists(33), "refused nested more than 32 deep"),
        "flags-nested-40-deep-pickler": (
            _bin([a, b], _deep_list(40), protocol=4),
            "refused nested more than 32 deep",
        ),
        "flags-chained-100000-deep": (
            _chained_lists(100_000),
            "refused nested more than 32 deep",
        ),
        "memo-index-175-million": (
            b"\x80\x02]r\x75\x77\x74\x0a.",
            "refused memo index 175404917 with 0 stored",
        ),
        "encode-copies-through-memo": (
            _memo_copies(1 << 16, 20_000),
            "refused more than 8 bytes of objects per byte of the file",
        ),
        "empty-list-flood": (
            b"\x80\x02(" + b"]" * 200_000 + b"l.",
            "refused more than 8 bytes of objects",
        ),
        "list-inside-itself": (b"\x80\x02]q\x00h\x00a.", "refused a list inside itself"),
        "os-system": (_bin([a, b], Call(__import__("os").system, "true")), "refused the global"),
        "issame-0d-bool-array": (_bin([a, b], np.array(True)), "ok 1"),
        "issame-0d-bool-array-protocol5": (_bin([a, b], np.array(True), protocol=5), "ok 1"),
        "issame-numpy-bool-scalar": (_bin([a, b], np.bool_(False)), "ok 1"),
        "issame-2d-array": (
            _bin([a, b], np.array([[True]])),
            "contents the issame flags are a bool array of shape (1, 1)",
        ),
    }
    return out


def run_case(name: str, data: bytes, checkpoint: str, folder: Path) -> dict:
    """``read_bin`` and ``marginface eval`` on one case (in this process)."""
    import contextlib
    import tracemalloc

    from marginface.cli import main
    from marginface.data.formats.verification import read_bin

    path = folder / f"{name}.bin"
    path.write_bytes(data)
    record: dict = {"case": name, "size": len(data)}
    tracemalloc.start()
    try:
        images, flags = read_bin(path)
        record["read"] = f"ok {len(flags)}"
    except Exception as exc:  # noqa: BLE001 - the test checks the type
        record["read"] = f"{type(exc).__name__}: {exc}"
    record["peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(
            ["eval", "--checkpoint", checkpoint, "--pairs", str(path),
             "--output", str(folder / f"{name}-report"), "--quiet", "--workers", "0"]
        )  # fmt: skip
    record["code"] = code
    record["stderr"] = err.getvalue().splitlines()
    return record


if __name__ == "__main__":
    checkpoint, folder = sys.argv[1], Path(sys.argv[2])
    every = cases()
    for name in sys.argv[3:] or list(every):
        print(json.dumps(run_case(name, every[name][0], checkpoint, folder)), flush=True)
