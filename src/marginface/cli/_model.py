"""The model of a use command (``verify``, ``search``, ``embed``, ``calibrate``): where it
comes from when ``--checkpoint`` is missing, and the refusal of an untrained one."""

from __future__ import annotations

import argparse

#: the one line a command that needs a model prints when ``--checkpoint`` is missing
MISSING_MODEL = (
    "no model given: pass --checkpoint PATH, a model folder (made by marginface import from a "
    "published face model: README.md, 'Use a published model') or the run folder of "
    "marginface train"
)


def add_untrained_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-untrained``."""
    parser.add_argument(
        "--allow-untrained",
        action="store_true",
        help="use the model even if it looks untrained (weights straight from initialisation, "
        "or no training record)",
    )


def load_use_model(args: argparse.Namespace):
    """``(model, info)`` of ``--checkpoint``, refused (ValueError, one line) when it looks
    untrained unless ``--allow-untrained`` (:mod:`marginface.backbones.trained`)."""
    from marginface.backbones.checkpoint import load_model
    from marginface.backbones.trained import check_trained

    if not args.checkpoint:
        raise ValueError(MISSING_MODEL)
    model, info = load_model(args.checkpoint)
    check_trained(model, info, args.checkpoint, allow=getattr(args, "allow_untrained", False))
    return model, info
