"""``marginface search``: the most similar faces of a gallery (.npz from marginface embed)."""

from __future__ import annotations

import argparse

from marginface.cli._model import add_untrained_argument
from marginface.cli._use import add_detector_arguments, add_model_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="find the most similar gallery faces of a query image (or folder of images)",
        description=(
            "Embeds QUERY (an image file or a folder of images) and prints the top-k gallery "
            "entries by cosine similarity (exact search: torch, or faiss when installed); "
            "'same' marks a score at or above the threshold (--threshold, else the model's "
            "calibrated one). Images that are not crops of the model's size are detected "
            "and aligned first."
        ),
    )
    p.add_argument("query", metavar="QUERY", help="image file or folder of images")
    p.add_argument("--gallery", required=True, metavar="FILE.npz", help="from marginface embed")
    p.add_argument(
        "--top-k", type=int, default=5, metavar="K", help="results per query (default 5)"
    )
    p.add_argument(
        "--backend", choices=["auto", "torch", "faiss"], default="auto", help="search backend"
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
    from pathlib import Path

    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"gallery {file} does not exist")
    try:
        with np.load(file, allow_pickle=False) as data:
            if "embeddings" not in data or "names" not in data:
                raise ValueError(
                    f"gallery {file} lacks 'embeddings' or 'names' (write it with marginface embed)"
                )
            emb, names = data["embeddings"], data["names"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"gallery {file} is not a readable .npz: {exc}") from exc
    if emb.ndim != 2 or len(emb) != len(names) or len(emb) == 0:
        raise ValueError(
            f"gallery {file}: embeddings {emb.shape} and {len(names)} names do not match"
        )
    return emb, names


def run(args: argparse.Namespace) -> int:
    import math
    import sys
    from pathlib import Path

    from marginface.cli._model import load_use_model
    from marginface.cli._use import check_positive, describe_failure, embed_options, make_aligner
    from marginface.evaluation.calibration import decision_threshold
    from marginface.evaluation.images import embed_files, find_images
    from marginface.evaluation.search import cosine_search

    check_positive(args.top_k, "--top-k")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ValueError(f"--threshold must be a finite number, got {args.threshold}")
    options = embed_options(args, progress=False)
    args.device = options.device
    gallery, names = _load_gallery(args.gallery)
    model, info = load_use_model(args)
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
        print(f"warning: skipped {describe_failure(path, why)}")
    if emb.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"checkpoint {args.checkpoint} gives {emb.shape[1]}-d embeddings but gallery "
            f"{args.gallery} holds {gallery.shape[1]}-d ones (embedded by another model?)"
        )
    scores, indices = cosine_search(emb, gallery, top_k=args.top_k, backend=args.backend)
    for path, row_s, row_i in zip(kept, scores, indices, strict=True):
        print(f"{path}:")
        for rank, (s, i) in enumerate(zip(row_s, row_i, strict=True), start=1):
            same = "  same" if threshold is not None and s >= threshold else ""
            print(f"  {rank}. {names[i]}  {s:.4f}{same}")
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
