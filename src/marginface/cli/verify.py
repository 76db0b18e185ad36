"""``marginface verify``: are two face images the same person?"""

from __future__ import annotations

import argparse

from marginface.cli._use import add_detector_arguments, add_model_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="cosine score of two face images, and same/different at a threshold",
        description=(
            "Prints the cosine similarity of the two images' embeddings (flip test) and "
            "'same' when it is >= the threshold: --threshold, else the checkpoint's stored "
            "verification threshold."
        ),
    )
    p.add_argument("image_a", metavar="A", help="first image file")
    p.add_argument("image_b", metavar="B", help="second image file")
    p.add_argument("--threshold", type=float, help="decision threshold on the cosine score")
    add_model_arguments(p)
    add_detector_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from marginface.cli._use import check_files_exist

    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ValueError(f"--threshold must be a finite number, got {args.threshold}")
    check_files_exist(("image", args.image_a), ("image", args.image_b))  # before torch
    import torch

    from marginface.backbones.checkpoint import load_model
    from marginface.devices import resolve_device
    from marginface.evaluation.embed import embed_images
    from marginface.evaluation.images import load_image

    args.device = str(resolve_device(args.device, what="--device"))
    model, info = load_model(args.checkpoint)
    threshold = args.threshold if args.threshold is not None else info.get("threshold")
    if threshold is not None and not isinstance(threshold, int | float):
        raise ValueError(f"{args.checkpoint}: the stored threshold {threshold!r} is not a number")
    if threshold is None:
        raise ValueError(
            f"checkpoint {args.checkpoint} stores no verification threshold; pass --threshold "
            "(e.g. the best_threshold in the metrics.json of marginface eval)"
        )
    from marginface.cli._use import make_aligner, model_flip

    size = int(info.get("image_size") or 112)
    aligner = make_aligner(args, size)
    images = torch.stack([load_image(p, size, aligner) for p in (args.image_a, args.image_b)])
    model.to(args.device)
    emb = embed_images(model, images.to(args.device), flip=model_flip(args, info))
    score = float((emb[0] * emb[1]).sum())
    verdict = "same" if score >= threshold else "different"
    print(f"score {score:.4f}  {verdict}  (threshold {threshold:.4f})")
    return 0
