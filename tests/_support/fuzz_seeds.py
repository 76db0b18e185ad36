"""The seed inputs of the fuzzing targets: small valid files of each format, and a few known
hostile ones. ``python tests/_support/fuzz_seeds.py`` rewrites ``tests/fuzz/seeds/<target>/``."""

from __future__ import annotations

import io
import os
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from marginface.data.formats.recordio import RecordHeader, RecordWriter, pack_payload, write_pack

SEEDS = Path(__file__).parents[1] / "fuzz" / "seeds"


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/marginface-fuzz-PWNED",))


def _encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (5, 4)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _joined(rec: bytes, idx: bytes) -> bytes:
    """One recordio input: the .rec's length in two bytes, then the .rec, then the .idx."""
    return len(rec).to_bytes(2, "little") + rec + idx


def _recordio() -> dict[str, bytes]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "p.rec"
        items = [(0, _encoded("PNG")), (0, _encoded("JPEG")), (1, _encoded("BMP"))]
        write_pack(rec, items, 2)
        out["insightface"] = _joined(rec.read_bytes(), rec.with_suffix(".idx").read_bytes())
        with RecordWriter(rec) as writer:
            for key, label in enumerate([0.0, 1.0, 1.0]):
                magic = b"\x0a\x23\xd7\xce" * 2  # the magic inside a payload: split records
                writer.write(key, pack_payload(RecordHeader(0, label, key), magic + b"xy"))
        out["plain"] = _joined(rec.read_bytes(), rec.with_suffix(".idx").read_bytes())
        with RecordWriter(rec) as writer:
            writer.write(0, pack_payload(RecordHeader(2, [2.0**31, 2.0**31 + 1])))
        out["huge-count"] = _joined(rec.read_bytes(), rec.with_suffix(".idx").read_bytes())
    return out


def _bin() -> dict[str, bytes]:
    images = [_encoded("PNG"), _encoded("JPEG")]
    return {
        "protocol4": pickle.dumps((images, [True]), protocol=4),
        "protocol2-numpy": pickle.dumps(
            ([np.frombuffer(b, dtype=np.uint8) for b in images], [np.bool_(False)]), protocol=2
        ),
        "protocol5-numpy": pickle.dumps(
            ([np.frombuffer(b, dtype=np.uint8).copy() for b in images], np.array([True])),
            protocol=5,
        ),
        "protocol0-numpy-flags": pickle.dumps((images, [np.bool_(True)]), protocol=0),
        "python2": b"\x80\x02]q\x00(U\x03abcU\x02dee]q\x01\x88a\x86q\x02.",
        "exploit": pickle.dumps(_Exploit()),
    }


def _pairs() -> dict[str, bytes]:
    return {
        "lfw": b"1\t2\nAnn\t1\t2\nAnn\t1\tBob\t2\n",
        "escape": b"Ann 1 2\n../../etc 1 1\n",
        "latin1": b"10 300\n\xe9t\xe9 1 2\n",
    }


def _landmarks() -> dict[str, bytes]:
    line = b"38.3 51.7 73.5 51.5 56.0 71.7 41.5 92.4 70.7 92.2"
    return {
        "two": b"# path x1 y1 ... x5 y5\nAnn/Ann_0001.png " + line + b"\nBob/Bob_0002.png " + line,
        "escape": b"../victim.png " + line + b"\n/abs.png " + line,
        "nan": b"a.png nan 1 2 3 4 5 6 7 8 inf\n",
    }


def _image() -> dict[str, bytes]:
    out = {fmt.lower(): _encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "PPM")}
    out["png-palette"] = _encoded("PNG", "P")
    out["png-grey16"] = _encoded("PNG", "I;16")
    out["webp"] = _encoded("WEBP")
    bomb = io.BytesIO()
    Image.new("L", (1100, 1000)).save(bomb, format="PNG")  # a bomb at the fuzzers' pixel limit
    out["bomb"] = bomb.getvalue()
    return out


def all_seeds() -> dict[str, dict[str, bytes]]:
    return {
        "recordio": _recordio(),
        "bin": _bin(),
        "pairs": _pairs(),
        "landmarks": _landmarks(),
        "image": _image(),
    }


def write_seeds(folder: Path = SEEDS) -> None:
    for target, seeds in all_seeds().items():
        (folder / target).mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / target / name).write_bytes(data)


if __name__ == "__main__":
    write_seeds(Path(sys.argv[1]) if len(sys.argv) > 1 else SEEDS)
