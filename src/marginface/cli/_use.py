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
