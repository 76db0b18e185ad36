"""Time to read a verification ``.bin`` of LFW's size with marginface's pickle machine against
Python's own unpickler (which would run whatever the file names).

Writes, in memory, a ``.bin`` of 12,000 images (6,000 pairs, as lfw.bin) of random bytes of
``--image-bytes`` each, in the layouts found in the wild: Python 3 bytes at protocol 4 (what
``marginface pack --pairs`` writes), numpy uint8 arrays at protocol 2 (some converted files)
and at protocol 5, and Python 2 ``str`` images (InsightFace's files); then times, best of
``--repeat``, ``pickle.loads`` (the C unpickler) and ``load_restricted`` on each::

    python benchmarks/bin_read.py [--image-bytes 6000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import pickle
import time

import numpy as np

from marginface.data.formats.restricted_pickle import load_restricted


def python2_bin(images: list[bytes], flags: list[bool]) -> bytes:
    """As Python 2's cPickle writes it at protocol 2: BINSTRING images, memo from 1."""
    out = bytearray(b"\x80\x02]q\x01(")
    for i, image in enumerate(images):
        out += b"T" + len(image).to_bytes(4, "little") + image
        out += b"r" + (i + 2).to_bytes(4, "little")
    out += b"e]r" + (len(images) + 2).to_bytes(4, "little") + b"("
    out += b"".join(b"\x88" if f else b"\x89" for f in flags)
    return bytes(out) + b"e\x86."


def best(function, data: bytes, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        function(data)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--image-bytes", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [rng.bytes(args.image_bytes) for _ in range(2 * args.pairs)]
    flags = [bool(b) for b in rng.integers(0, 2, args.pairs)]
    arrays = [np.frombuffer(b, dtype=np.uint8) for b in images]
    layouts = {
        "bytes, protocol 4": pickle.dumps((images, flags), protocol=4),
        "numpy uint8, protocol 2": pickle.dumps((arrays, np.array(flags)), protocol=2),
        "numpy uint8, protocol 5": pickle.dumps((arrays, np.array(flags)), protocol=5),
        "Python 2 str, protocol 2": python2_bin(images, flags),
    }
    print(f"load average {os.getloadavg()[0]:.1f}; best of {args.repeat}")
    print(f"{'layout':26} {'MB':>6} {'pickle.loads':>13} {'pickle machine':>15} {'ratio':>6}")
    for name, data in layouts.items():
        stock = best(lambda d: pickle.loads(d, encoding="bytes"), data, args.repeat)
        ours = best(load_restricted, data, args.repeat)
        print(f"{name:26} {len(data) / 1e6:6.1f} {stock:12.3f}s {ours:14.3f}s {ours / stock:6.1f}")


if __name__ == "__main__":
    main()
