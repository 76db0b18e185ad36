"""``marginface search``: the most similar faces of a gallery (.npz from marginface embed)."""

from __future__ import annotations

import argparse

from marginface.cli._errors import print_warning
from marginface.cli._model import add_untrained_argument
from marginface.cli._use import add_detector_arguments, add_model_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the most similar gallery faces of a query image (or folder of images)",
        description=(
            "Embeds QUERY (an image file or a folder of images) and prints the top-k gallery "
            "entries by cosine similarity (exact search up to 1M gallery rows, an approximate "
            "faiss index above; --index); 'same' marks a score at or above the threshold "
            "(--threshold, else the model's calibrated one). Images that are not crops of the "
            "model's size are detected and aligned first."
        ),
    )
    p.add_argument("query", metavar="QUERY", help="image file or folder of images")
    p.add_argument("--gallery", required=True, metavar="FILE.npz", help="from marginface embed")
    p.add_argument(
        "--top-k", type=int, default=5, metavar="K", help="results per query (default 5)"
    )
    p.add_argument(
        "--index",
        choices=["auto", "exact", "hnsw", "ivfpq"],
        default="auto",
        help="exact search, or an approximate faiss index (HNSW; IVF-PQ for galleries too big "
        "for memory as float32); auto: exact up to 1,000,000 gallery rows (default auto)",
    )
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "faiss"],
        default="auto",
        help="exact search's backend (default auto: faiss when installed)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="mark scores >= this as 'same' (default: the model's calibrated threshold)",
    )
    add_model_arguments(p)
    add_untrained_argument(p)
    add_detector_arguments(p, auto=True)
    p.set_defaults(func=run)


def _load_gallery(path: str):
    """The gallery's embeddings and names, read by
    :func:`marginface.data.formats.npz.read_npz`: each array's declared shape is checked
    against the file's bytes before anything is allocated, and nothing is unpickled."""
    from marginface.data.formats.npz import read_npz

    arrays = read_npz(path, ["embeddings", "names"], what="gallery (from marginface embed)")
    emb, names = arrays["embeddings"], arrays["names"]
    if emb.ndim != 2 or emb.dtype.kind != "f" or names.ndim != 1 or names.dtype.kind not in "US":
        raise ValueError(
            f"{path} is not a gallery (from marginface embed): embeddings {emb.dtype} "
            f"{emb.shape} and names {names.dtype} {names.shape} (expected (N, D) floats and "
            "N names)"
        )
    if len(emb) != len(names) or len(emb) == 0:
        raise ValueError(
            f"gallery {path}: embeddings {emb.shape} and {len(names)} names do not match"
        )
    return emb, names


def run(args: argparse.Namespace) -> int:
    import math
    import sys
    from pathlib import Path

    from marginface.cli._use import check_files_exist

    if not Path(args.query).is_dir():  # checked before the heavy imports
        check_files_exist(("query image", args.query))
    check_files_exist(("gallery", args.gallery))
    from marginface.cli._model import load_use_model
    from marginface.cli._use import (
        check_positive,
        describe_failure,
        embed_options,
        make_aligner,
        model_flip,
    )
    from marginface.evaluation.calibration import decision_threshold
    from marginface.inference.images import embed_files, find_images
    from marginface.inference.index import build_index
    from marginface.text import printable

    check_positive(args.top_k, "--top-k")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ValueError(f"--threshold must be a finite number, got {args.threshold}")
    options = embed_options(args, progress=False)
    args.device = options.device
    gallery, names = _load_gallery(args.gallery)
    model, info = load_use_model(args)
    options = options.replace(flip=model_flip(args, info))
    threshold, origin = decision_threshold(info, args.threshold)
    size = int(info.get("image_size") or 112)
    aligner = make_aligner(args, size)
    query = Path(args.query)
    if query.is_dir():
        paths = find_images(query)
    elif query.is_file():
        paths = [query]
    else:
        raise FileNotFoundError(f"query image {query} does not exist")
    emb, kept, failed = embed_files(model, paths, size, options, aligner)
    for path, why in failed.items():
        print_warning(f"skipped {describe_failure(path, why)}")
    if emb.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"checkpoint {args.checkpoint} gives {emb.shape[1]}-d embeddings but gallery "
            f"{args.gallery} holds {gallery.shape[1]}-d ones (embedded by another model?)"
        )
    index = build_index(gallery, kind=args.index, backend=args.backend)
    if index.kind != "exact":
        print(f"{index.kind} index of {index.size:,} gallery rows (approximate search)")
    scores, indices = index.search(emb, top_k=args.top_k)
    for path, row_s, row_i in zip(kept, scores, indices, strict=True):
        print(f"{printable(path)}:")
        for rank, (s, i) in enumerate(zip(row_s, row_i, strict=True), start=1):
            if i < 0:
                continue
            same = "  same" if threshold is not None and s >= threshold else ""
            print(f"  {rank}. {printable(names[i])}  {s:.4f}{same}")
    if threshold is None:
        print(
            f"marginface search: note: model {args.checkpoint} has no threshold, so no score "
            f"is marked 'same'; calibrate it (marginface calibrate --checkpoint "
            f"{args.checkpoint} --pairs SET) or pass --threshold",
            file=sys.stderr,
        )
    else:
        print(f"('same': score >= threshold {threshold:.4f}: {origin})")
    return 0
