"""Helpers shared by the commands (options spelt the same everywhere, the model and detector
options of the use commands): not a command itself."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *flags: str,
    aliases: Sequence[str] = (),
    **kwargs: Any,
) -> argparse.Action:
    """``parser.add_argument(*flags, **kwargs)``, plus ``aliases``: older spellings of the same
    option, accepted with the same meaning but left out of ``--help`` (:class:`HideAliases`;
    docs/cli.md lists them)."""
    action = parser.add_argument(*flags, *aliases, **kwargs)
    action.hidden_aliases = tuple(aliases)  # type: ignore[attr-defined]
    return action


class HideAliases(argparse.HelpFormatter):
    """A help formatter that leaves out the aliases of :func:`add_option` (mixed into every
    command's formatter by :func:`marginface.cli.build_parser`)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


def add_model_arguments(parser: argparse.ArgumentParser, flip: bool = True) -> None:
    """``--checkpoint`` (required), ``--device``, ``--batch-size``, ``--no-flip`` and
    ``--quiet``."""
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


def embed_options(args: argparse.Namespace, progress: bool | None = None):
    """The :class:`~marginface.evaluation.embed.EmbedOptions` of the parsed ``--batch-size``,
    ``--no-flip``, ``--device`` (resolved: ``auto`` -> the best device), ``--workers`` and
    ``--quiet`` (``progress`` overrides the latter); errors name the flag."""
    from marginface.devices import resolve_device
    from marginface.evaluation.embed import EmbedOptions

    check_positive(args.batch_size, "--batch-size")
    workers = getattr(args, "workers", 0)
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    return EmbedOptions(
        batch_size=args.batch_size,
        flip=args.flip,
        device=str(resolve_device(args.device, what="--device")),
        workers=workers,
        progress=not getattr(args, "quiet", False) if progress is None else progress,
    )


def head_kwargs_for(given: Any, heads: Sequence[str], flag: str = "--head-kwargs") -> dict:
    """``{head: {hyperparameter: value}}`` for each of ``heads`` from a ``--head-kwargs``
    mapping, which takes either form (docs/cli.md):

    - per head, ``{arcface: {s: 64}, cosface: {s: 64}}``: every key a head name and every value
      a mapping; each head gets its own entry (entries of heads not run are ignored);
    - flat, ``{s: 64, m: 0.5}``: for one head, its hyperparameters (``create_head`` checks
      them); for several, each hyperparameter goes to every head that has it, and one that none
      of ``heads`` has is a ValueError naming it.
    """
    from marginface.heads import head_hparams, list_heads

    if not isinstance(given, dict):
        raise ValueError(f"{flag}: expected a mapping, got {given!r}")
    names = set(list_heads())
    if given and all(k in names and isinstance(v, dict) for k, v in given.items()):
        return {h: dict(given.get(h, {})) for h in heads}
    if any(isinstance(v, dict) for v in given.values()):
        bad = sorted(k for k, v in given.items() if isinstance(v, dict) and k not in names)
        raise ValueError(
            f"{flag}: {', '.join(map(str, bad)) or 'a value'} is a mapping but "
            f"{'not a head name' if bad else 'other keys are not head names'}; give "
            "{head: {name: value}} for every key, or a flat {name: value}"
        )
    if len(heads) == 1:
        return {heads[0]: dict(given)}
    out: dict[str, dict] = {h: {} for h in heads}
    for key, value in given.items():
        takers = [h for h in heads if h not in names or key in head_hparams(h)]
        if not takers:
            raise ValueError(f"{flag}: none of {', '.join(heads)} has a hyperparameter {key!r}")
        for h in takers:
            out[h][key] = value
    return out


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
        default=None,
        metavar="P,R,O",
        help="--detect: face probabilities the three MTCNN stages must exceed (0.6,0.7,0.7); "
        "with an SCRFD --detector, its one score threshold (0.5)",
    )
    parser.add_argument(
        "--detector",
        default="mtcnn",
        metavar="mtcnn|FILE.onnx",
        help="--detect: the built-in MTCNN (default), or an SCRFD ONNX file (InsightFace's "
        "det_10g.onnx, det_500m.onnx, ...: the detector most published models were aligned "
        "with), run by onnxruntime",
    )


def detector_options(args: argparse.Namespace) -> dict:
    """``detector``, ``min_face_size`` and ``thresholds`` for
    :func:`marginface.data.detect.make_detector`, from the parsed arguments."""
    scrfd = args.detector != "mtcnn"
    thresholds = None
    if args.thresholds is not None:
        want = 1 if scrfd else 3
        try:
            thresholds = tuple(float(v) for v in args.thresholds.split(","))
        except ValueError:
            thresholds = ()
        if len(thresholds) != want:
            example = "one number like 0.5 (SCRFD)" if scrfd else "3 numbers like 0.6,0.7,0.7"
            raise ValueError(f"--thresholds must be {example}, got {args.thresholds!r}")
    if scrfd and not Path(args.detector).is_file():
        raise FileNotFoundError(f"--detector {args.detector}: no such file (or give mtcnn)")
    return {
        "detector": args.detector,
        "min_face_size": args.min_face_size,
        "thresholds": thresholds,
    }


def make_aligner(args: argparse.Namespace, image_size: int, fallback: bool = False):
    """A :class:`~marginface.data.detect.FaceAligner` when ``--detect`` is given, else None."""
    if not getattr(args, "detect", False):
        return None
    from marginface.data.detect import FaceAligner, make_detector

    detector = make_detector(device=args.device, **detector_options(args))
    return FaceAligner(detector, image_size, args.select, fallback=fallback)


def describe_failure(path, why: str) -> str:
    """How a skipped file is named in a warning: no face found, or unreadable (and why)."""
    from marginface.evaluation.images import NO_FACE

    if why == NO_FACE:
        return f"image {path} (no face found)"
    return f"unreadable image {path} ({why})"
