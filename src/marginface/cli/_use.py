"""Helpers shared by the use commands (embed, verify, search, export): not a command itself."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser, flip: bool = True) -> None:
    """``--checkpoint`` (required), ``--device``, ``--batch-size`` and ``--no-flip``."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="run folder, model.pt (with model.json) or checkpoint.pt",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    if flip:
        parser.add_argument(
            "--batch-size", type=int, default=64, metavar="N", help="images per batch"
        )
        parser.add_argument(
            "--no-flip",
            dest="flip",
            action="store_false",
            help="embed images only, without adding the mirrored image's embedding",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_positive(value: int, name: str) -> None:
    """ValueError unless ``value`` >= 1."""
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def add_detector_arguments(parser: argparse.ArgumentParser, switch: bool = True) -> None:
    """The face detector's options; with ``switch``, also ``--detect`` (off by default: the
    images are taken as aligned crops)."""
    if switch:
        parser.add_argument(
            "--detect",
            action="store_true",
            help="images are raw photos: detect the face (MTCNN) and align it to the ArcFace "
            "template first (default: images are aligned crops already)",
        )
    parser.add_argument(
        "--select",
        choices=["largest", "central", "score"],
        default="largest",
        help="--detect: which face of several (default: the largest)",
    )
    parser.add_argument(
        "--min-face-size",
        type=float,
        default=20.0,
        metavar="PX",
        help="--detect: smallest face side searched for, in pixels (default 20)",
    )
    parser.add_argument(
        "--thresholds",
        default="0.6,0.7,0.7",
        metavar="P,R,O",
        help="--detect: face probabilities the three MTCNN stages must exceed (0.6,0.7,0.7)",
    )


def detector_options(args: argparse.Namespace) -> dict:
    """``min_face_size`` and ``thresholds`` for the detector, from the parsed arguments."""
    try:
        thresholds = tuple(float(v) for v in args.thresholds.split(","))
    except ValueError:
        thresholds = ()
    if len(thresholds) != 3:
        raise ValueError(
            f"--thresholds must be 3 numbers like 0.6,0.7,0.7, got {args.thresholds!r}"
        )
    return {"min_face_size": args.min_face_size, "thresholds": thresholds}


def make_aligner(args: argparse.Namespace, image_size: int, fallback: bool = False):
    """A :class:`~marginface.data.detect.FaceAligner` when ``--detect`` is given, else None."""
    if not getattr(args, "detect", False):
        return None
    from marginface.data.detect import FaceAligner, FaceDetector

    detector = FaceDetector(device=args.device, **detector_options(args))
    return FaceAligner(detector, image_size, args.select, fallback=fallback)


def describe_failure(path, why: str) -> str:
    """How a skipped file is named in a warning: no face found, or unreadable (and why)."""
    from marginface.evaluation.images import NO_FACE

    if why == NO_FACE:
        return f"image {path} (no face found)"
    return f"unreadable image {path} ({why})"
