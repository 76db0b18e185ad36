"""Evaluating on raw photos with ``--detect``: each distinct photo detected and embedded once,
and the faces kept for the next model, against every pair's two images done afresh (before).

The workload has LFW's repetition structure: its 6,000 pairs name 12,000 images of which 7,701
are distinct. Without real LFW photos the photos are made: scikit-image's astronaut portrait
(512x512) shifted, scaled and brightened at random, cut to 250x250 (LFW's size) and saved as
JPEG, one distinct file per distinct image (some crops cut the face off: MTCNN found a face in
572 of 770; the others are used whole, as ``eval`` does).
The pair list names 12,000 of them: the 7,701 distinct once each, then 4,299 repeats, shuffled
(``--pairs`` scales the whole down in proportion).

``--lfw pairs.txt::PHOTOS`` measures real LFW instead: the official pair list over the original
photos (fewer ``--pairs``: the first genuine and the first impostor pairs, half each; 600 is
the first fold).

Timed, each on the same photos and model (a randomly initialised ``--backbone``: the speed does
not depend on the weights), flip test, batch 64, ``--threads`` torch threads:

- before: the previous ``evaluate_pairs``: every one of the 2N images loaded, detected,
  aligned and embedded (no cache);
- after, first model: :func:`marginface.evaluation.evaluate_pairs` with a cached aligner and an
  empty cache folder: each distinct photo detected and embedded once;
- after, next model: a second checkpoint (a new process, the same cache folder): no photo
  detected, each distinct image embedded once.

Prints the seconds (wall and this process's CPU: with ``--threads 1`` and no loader workers
the CPU seconds move much less with other work on the machine), the side-by-side ratios and
the largest score difference between before and after (the same computation, gathered:
float32 rounding at most)::

    nice -n 10 python benchmarks/eval_each_image_once.py --pairs 6000 --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marginface.backbones import create_backbone
from marginface.data.detection.detect import FaceAligner, FaceDetector
from marginface.data.detection.detect_cache import DetectionCache
from marginface.data.formats.verification import EncodedImages, PairSet, _TensorsOnly
from marginface.evaluation import EmbedOptions, embed_dataset, evaluate_pairs, pair_scores

#: LFW's official pairs: 6,000 pairs, 12,000 image references, 7,701 distinct images.
LFW_PAIRS, LFW_DISTINCT = 6000, 7701


def astronaut() -> Image.Image:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("needs scikit-image (pip install -e .[dev]) for data/astronaut.png")
    return Image.open(Path(spec.origin).parent / "data" / "astronaut.png").convert("RGB")


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct 250x250 JPEGs of the astronaut, each shifted/scaled/brightened."""
    rng = np.random.default_rng(seed)
    photo = astronaut()
    paths = []
    for k in range(count):
        side = int(rng.integers(300, 420))
        x, y = (int(v) for v in rng.integers(0, 512 - side, 2))
        image = photo.crop((x, y, x + side, y + side)).resize((250, 250), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.8, 1.1)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG")
        path = folder / f"photo_{k:05d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def lfw_like(folder: Path, pairs: int, seed: int = 0) -> PairSet:
    """A pair set of ``pairs`` pairs with LFW's repetition (distinct / references = 7701/12000)."""
    distinct = round(LFW_DISTINCT * pairs / LFW_PAIRS)
    photos = make_photos(folder, distinct, seed)
    rng = np.random.default_rng([seed, 1])
    references = photos + [photos[i] for i in rng.integers(0, distinct, 2 * pairs - distinct)]
    references = [references[i] for i in rng.permutation(len(references))]
    issame = np.arange(pairs) % 2 == 0  # labels do not change the work
    return PairSet(_TensorsOnly(EncodedImages(references, 112)), issame, "lfw-like")


def lfw_real(spec: str, pairs: int) -> PairSet:
    """The first ``pairs`` pairs of an LFW ``pairs.txt`` (``FILE::PHOTOS``) over its photos."""
    from marginface.data.formats.verification import read_pairs_txt

    pairs_file, folder = spec.split("::", 1)
    paths, issame = read_pairs_txt(pairs_file, folder)
    half = pairs // 2  # the file holds each fold's genuine pairs, then its impostors
    keep = sorted([*np.flatnonzero(issame)[:half], *np.flatnonzero(~issame)[: pairs - half]])
    paths = [p for k in keep for p in (paths[2 * k], paths[2 * k + 1])]
    return PairSet(_TensorsOnly(EncodedImages(paths, 112)), issame[keep], "lfw")


def aligner(cache_folder: Path | None, threads: int) -> FaceAligner:
    torch.set_num_threads(threads)
    detector = FaceDetector()
    cache = None if cache_folder is None else DetectionCache(detector.settings(), cache_folder)
    return FaceAligner(detector, 112, fallback=True, cache=cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=LFW_PAIRS, help="pairs (LFW: 6000)")
    parser.add_argument("--backbone", default="mobilefacenet")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", help="folder for the photos and cache (default: a temporary)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--lfw", help="pairs.txt::PHOTOS: real LFW instead of made photos")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="marginface-eval-once-"))
    (work / "photos").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs = lfw_real(args.lfw, args.pairs) if args.lfw else lfw_like(work / "photos", args.pairs)
    made = time.perf_counter() - t0
    sources = pairs.images.dataset.sources
    n_distinct = len(set(sources))
    print(f"{args.pairs} pairs: {len(sources)} images named, {n_distinct} distinct ({made:.0f} s)")
    torch.manual_seed(0)
    model = create_backbone(args.backbone)
    options = EmbedOptions(batch_size=64, progress=False)

    # before: every named image loaded, detected and embedded
    pairs.images.dataset.aligner = aligner(None, args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    before_scores = pair_scores(embed_dataset(model, pairs.images, options))
    before, before_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"before: {before:.1f} s ({before_cpu:.1f} s CPU)")

    cache_folder = work / "cache"
    results = {}
    for run in ("first model", "next model"):
        faces = aligner(cache_folder, args.threads)
        pairs.images.dataset.aligner = faces
        calls = [0]
        detect_one = faces.detector.detect_one

        def counted(array, detect_one=detect_one, calls=calls):
            calls[0] += 1
            return detect_one(array)

        faces.detector.detect_one = counted
        t0, c0 = time.perf_counter(), time.process_time()
        _, scores = evaluate_pairs(model, pairs, options)
        results[run] = {
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "detections": calls[0],
            "max_score_difference": float(np.abs(scores - before_scores).max()),
        }
        print(
            f"after, {run}: {results[run]['seconds']:.1f} s "
            f"({results[run]['cpu_seconds']:.1f} s CPU), {calls[0]} detections"
        )

    for unit, key, base in (("s", "seconds", before), ("CPU s", "cpu_seconds", before_cpu)):
        first, nxt = results["first model"][key], results["next model"][key]
        print()
        print(f"{'':34s}{'before':>10s}{'after':>10s}{'ratio':>8s}")
        print(f"{f'one model ({unit})':34s}{base:10.1f}{first:10.1f}{base / first:8.2f}")
        print(f"{'a second model on the same photos':34s}{base:10.1f}{nxt:10.1f}{base / nxt:8.2f}")
        both_before, both_after = 2 * base, first + nxt
        ratio = both_before / both_after
        print(f"{f'two models ({unit})':34s}{both_before:10.1f}{both_after:10.1f}{ratio:8.2f}")
    found = [results[run]["detections"] for run in ("first model", "next model")]
    print(f"detections: before {len(sources)} per model; after {found[0]} then {found[1]}")
    diff = max(r["max_score_difference"] for r in results.values())
    print(f"largest score difference, after vs before: {diff:.2e}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "pairs": args.pairs,
                    "photos": "LFW " + args.lfw if args.lfw else "made from astronaut.png",
                    "images_named": len(sources),
                    "distinct": n_distinct,
                    "backbone": args.backbone,
                    "threads": args.threads,
                    "before_seconds": before,
                    "before_cpu_seconds": before_cpu,
                    **{k.replace(" ", "_"): v for k, v in results.items()},
                    "load_average": os.getloadavg(),
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
