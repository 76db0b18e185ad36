"""Helpers shared by the commands (options spelt the same everywhere, the model and detector
options of the use commands): not a command itself."""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marginface.text import cut, short_repr


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
    """``--checkpoint`` (needed: when missing, :func:`marginface.cli.main` says where a model
    comes from), ``--device``, ``--batch-size``, ``--no-flip`` and ``--quiet``."""
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="the model: a run folder, model.pt (with model.json) or checkpoint.pt (needed)",
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
            default=None,
            help="embed images only, without adding the mirrored image's embedding (default: "
            "the flip test when the model's input contract says its authors used it)",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_files_exist(*files: tuple[str, str]) -> None:
    """FileNotFoundError ``WHAT PATH does not exist`` for the first ``(what, path)`` that is not
    a file: called before a command's heavy imports (torch, the model), so that a mistyped path
    is said at once, not after seconds of loading."""
    from pathlib import Path

    for what, path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path} does not exist")


def model_flip(args: argparse.Namespace, info: dict) -> bool:
    """The flip test for a loaded model: off with ``--no-flip``, else its input contract's
    ``flip_test`` (marginface's own models: on)."""
    if getattr(args, "flip", None) is False:
        return False
    return bool(info.get("input", {}).get("flip_test", True))


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
        flip=args.flip is not False,
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
        raise ValueError(f"{flag}: expected a mapping, got {short_repr(given)}")
    names = set(list_heads())
    if given and all(k in names and isinstance(v, dict) for k, v in given.items()):
        return {h: dict(given.get(h, {})) for h in heads}
    if any(isinstance(v, dict) for v in given.values()):
        bad = sorted(k for k, v in given.items() if isinstance(v, dict) and k not in names)
        raise ValueError(
            f"{flag}: {', '.join(cut(str(b), 100) for b in bad[:5]) or 'a value'} is a mapping but "
            f"{'not a head name' if bad else 'other keys are not head names'}; give "
            "{head: {name: value}} for every key, or a flat {name: value}"
        )
    if len(heads) == 1:
        return {heads[0]: dict(given)}
    out: dict[str, dict] = {h: {} for h in heads}
    for key, value in given.items():
        takers = [h for h in heads if h not in names or key in head_hparams(h)]
        if not takers:
            raise ValueError(
                f"{flag}: none of {', '.join(heads)} has a hyperparameter {short_repr(key)}"
            )
        for h in takers:
            out[h][key] = value
    return out


def add_detector_arguments(
    parser: argparse.ArgumentParser, switch: bool = True, auto: bool = False
) -> None:
    """The face detector's options; with ``switch``, also ``--detect`` (off by default: the
    images are taken as aligned crops); with ``auto``, detection is on by default for every
    image that is not a crop of the model's size, ``--no-detect`` turns it off
    (:class:`marginface.data.detection.detect.CropsOrPhotos`)."""
    if switch and auto:
        parser.add_argument(
            "--detect",
            action="store_const",
            const=True,
            default=None,
            help="detect the face (MTCNN) and align it to the ArcFace template in every "
            "image (default: in every image that is not already a crop of the model's size)",
        )
        parser.add_argument(
            "--no-detect",
            dest="detect",
            action="store_const",
            const=False,
            help="the images are aligned crops: no detection, each resized to the model's size",
        )
    elif switch:
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
    :func:`marginface.data.detection.detect.make_detector`, from the parsed arguments; errors name
    the flag."""
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
            raise ValueError(f"--thresholds must be {example}, got {short_repr(args.thresholds)}")
        if not all(0 <= t < 1 for t in thresholds):  # NaN fails this too
            many = "one probability" if scrfd else "3 probabilities"
            raise ValueError(
                f"--thresholds must be {many} in [0, 1), got {short_repr(args.thresholds)}"
            )
    size = args.min_face_size
    if not (math.isfinite(size) and size >= 12):
        raise ValueError(f"--min-face-size must be a finite number >= 12 (pixels), got {size}")
    if scrfd and not Path(args.detector).is_file():
        raise FileNotFoundError(f"--detector {args.detector}: no such file (or give mtcnn)")
    return {"detector": args.detector, "min_face_size": size, "thresholds": thresholds}


def add_detect_cache_argument(parser: argparse.ArgumentParser) -> None:
    """``--detect-cache DIR`` (where the faces found are kept by photo content)."""
    parser.add_argument(
        "--detect-cache",
        metavar="DIR",
        help="--detect: keep the faces found, by photo content (SHA-256) and detector "
        "settings, in DIR, so that the next model or run on the same photos does not detect "
        "them again; 'off' = this run only (default: $MARGINFACE_DETECT_CACHE, else "
        "~/.cache/marginface/detections)",
    )


def detect_cache_folder(args: argparse.Namespace):
    """The detection cache folder of ``--detect-cache`` (its default: see
    :func:`marginface.data.detection.detect_cache.default_cache_folder`); None = memory only."""
    from pathlib import Path

    from marginface.data.detection.detect_cache import default_cache_folder

    given = getattr(args, "detect_cache", None)
    if given is None:
        return default_cache_folder()
    return None if given.strip().lower() == "off" else Path(given).expanduser()


def make_aligner(
    args: argparse.Namespace, image_size: int, fallback: bool = False, cache: bool = False
):
    """A :class:`~marginface.data.detection.detect.FaceAligner` when ``--detect`` is given, None
    with ``--no-detect`` (or no switch), and by default (``detect`` None) a
    :class:`~marginface.data.detection.detect.CropsOrPhotos`: crops of ``image_size`` pass, any
    other image is detected and aligned (the detector is loaded at the first such image).

    ``cache``: the aligner keeps the faces it finds by photo content
    (:class:`~marginface.data.detection.detect_cache.DetectionCache`), in memory and in the folder
    of ``--detect-cache``.
    """
    detect = getattr(args, "detect", False)
    if detect is False:
        return None
    from marginface.inference.verify import face_aligner

    return face_aligner(
        image_size, detect, device=args.device, select=args.select, fallback=fallback,
        cache=cache, cache_folder=detect_cache_folder(args) if cache else None,
        **detector_options(args),
    )  # fmt: skip


def describe_failure(path, why: str) -> str:
    """How a skipped file is named in a warning: no face found, or unreadable (and why)."""
    from marginface.inference.images import NO_FACE

    if why == NO_FACE:
        return f"image {path} (no face found)"
    return f"unreadable image {path} ({why})"
