"""Time to read 10,000 face images from a RecordIO pack against from a folder.

Creates a folder dataset of 112x112 JPEGs (100 identities x 100 images, synthetic faces) in a
temporary directory, packs it with ``marginface pack``'s code, then times, for each source:

- ``bytes``: fetching the encoded bytes of every image (file open + read vs seek + read);
- ``items``: ``dataset[i]`` for every item (bytes + JPEG decode + normalised tensor);
- ``items, shuffled``: the same in a random order (what a training epoch does).

Both sources are in the page cache (just written), so this measures the per-item overhead, not
the disk. Runs in about a minute on two cores::

    python benchmarks/data_read.py [--images 10000] [--size 112]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from marginface.data import open_dataset
from marginface.data.formats.pack import pack_folder
from marginface.data.formats.recordio import unpack_payload
from marginface.data.synthetic import render_face


def make_folder(root: Path, images: int, size: int, per_identity: int = 100) -> None:
    unique = 200  # render a few distinct faces; the files are distinct copies
    encoded = []
    for k in range(unique):
        buffer = io.BytesIO()
        render_face(0, k // 10, k % 10, size).save(buffer, format="JPEG", quality=95)
        encoded.append(buffer.getvalue())
    for i in range(images):
        folder = root / f"id{i // per_identity:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.jpg").write_bytes(encoded[i % unique])


def timed(label: str, fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  {label:<24} {seconds:7.2f} s wall, {cpu:7.2f} s CPU", flush=True)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "faces"
        t0 = time.perf_counter()
        make_folder(root, args.images, args.size)
        result = pack_folder(root, Path(tmp) / "pack" / "train.rec", progress=False)
        folder_mb = sum(p.stat().st_size for p in root.rglob("*.jpg")) / 1e6
        pack_mb = result.rec_path.stat().st_size / 1e6
        print(
            f"{args.images} JPEG images {args.size}x{args.size}: folder {folder_mb:.1f} MB, "
            f"pack {pack_mb:.1f} MB (made in {time.perf_counter() - t0:.1f} s)\n"
        )
        folder = open_dataset(root, image_size=args.size)
        pack = open_dataset(result.rec_path, image_size=args.size)
        assert len(folder) == len(pack) == args.images
        order = np.random.default_rng(0).permutation(args.images)
        n = args.images
        rows = {}
        print("folder:")
        rows["bytes"] = [timed("bytes", lambda: [p.read_bytes() for p in folder.paths])]
        rows["items"] = [timed("items", lambda: [folder[i] for i in range(n)])]
        rows["items, shuffled"] = [timed("items, shuffled", lambda: [folder[i] for i in order])]
        print("pack:")
        reader = pack.reader
        rows["bytes"].append(
            timed("bytes", lambda: [unpack_payload(reader.read(int(k))) for k in pack.keys])
        )
        rows["items"].append(timed("items", lambda: [pack[i] for i in range(n)]))
        rows["items, shuffled"].append(
            timed("items, shuffled", lambda: [pack[int(i)] for i in order])
        )
        print(f"\n{f'read {n} images':<18} {'folder':>16} {'pack':>16} {'speed-up (CPU)':>15}")
        for name, ((fw, fc), (pw, pc)) in rows.items():
            print(f"{name:<18} {fw:6.2f}s ({fc:5.2f}) {pw:6.2f}s ({pc:5.2f}) {fc / pc:>14.2f}x")
        print("(wall seconds, CPU seconds of this process in brackets)")
        per_folder, per_pack = rows["items"][0][1] / n, rows["items"][1][1] / n
        print(
            f"CPU per image (items): folder {1e3 * per_folder:.3f} ms, pack {1e3 * per_pack:.3f} ms"
        )


if __name__ == "__main__":
    main()
