"""``marginface verify``: are two face images the same person?"""

from __future__ import annotations

import argparse

from marginface.cli._model import add_untrained_argument
from marginface.cli._use import add_detector_arguments, add_model_arguments

#: the exit code of a score without a verdict (no threshold known; docs/cli.md)
NO_VERDICT = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="cosine score of two face images, and same/different at a threshold",
        description=(
            "Prints the cosine similarity of the two images' embeddings (flip test) and "
            "'same' when it is >= the threshold: --threshold, else the model's calibrated "
            "threshold (marginface calibrate), else its model.json 'threshold'. With none, "
            "the score is printed with the verdict 'none' and the exit code is 1. Images "
            "that are not crops of the model's size are detected and aligned first."
        ),
    )
    p.add_argument("image_a", metavar="A", help="first image file")
    p.add_argument("image_b", metavar="B", help="second image file")
    p.add_argument(
        "--threshold",
        type=float,
        help="decision threshold on the cosine score (default: the model's calibrated one)",
    )
    add_model_arguments(p)
    add_untrained_argument(p)
    add_detector_arguments(p, auto=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math
    import sys

    from marginface.cli._use import check_files_exist

    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ValueError(f"--threshold must be a finite number, got {args.threshold}")
    check_files_exist(("image", args.image_a), ("image", args.image_b))  # before torch
    from marginface.cli._model import load_use_model
    from marginface.cli._use import make_aligner, model_flip
    from marginface.devices import resolve_device
    from marginface.inference.verify import verify_images

    args.device = str(resolve_device(args.device, what="--device"))
    model, info = load_use_model(args)
    aligner = make_aligner(args, int(info.get("image_size") or 112))
    result = verify_images(
        model,
        info,
        args.image_a,
        args.image_b,
        threshold=args.threshold,
        aligner=aligner,
        flip=model_flip(args, info),
        device=args.device,
        allow_untrained=True,  # load_use_model has decided
    )
    score, threshold = result["score"], result["threshold"]
    if threshold is None:
        print(f"score {score:.4f}  none  (no threshold)")
        print(
            f"marginface verify: no verdict: model {args.checkpoint} has no threshold; "
            f"calibrate it (marginface calibrate --checkpoint {args.checkpoint} --pairs SET) "
            "or pass --threshold",
            file=sys.stderr,
        )
        return NO_VERDICT
    verdict = "same" if result["same"] else "different"
    print(f"score {score:.4f}  {verdict}  (threshold {threshold:.4f}: {result['origin']})")
    return 0
