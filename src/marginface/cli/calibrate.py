"""``marginface calibrate``: the model's threshold at a chosen FAR on a pair set, written into
its model.json (``verify`` and ``search`` then use it)."""

from __future__ import annotations

import argparse

from marginface.cli._model import add_untrained_argument
from marginface.cli._use import add_detector_arguments, add_model_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="find the model's threshold at a false-accept rate on a pair set; store it in "
        "model.json",
        description=(
            "Embeds the pair set, finds the cosine threshold at --far (at most FAR x impostor "
            "pairs accepted), and writes it into the model's model.json under 'calibration' "
            "(threshold, FAR, pair set, pair counts, TAR with its 95% bootstrap interval, "
            "date) and as its 'threshold'; verify and search use it from then on."
        ),
    )
    p.add_argument(
        "--pairs",
        required=True,
        metavar="SPEC",
        help="pair set: a .bin, a pairs.txt or a .csv (a,b,same[,identity]; images beside "
        "it, or under --images), or a dataset spec to generate pairs from",
    )
    p.add_argument(
        "--far",
        type=float,
        default=1e-3,
        metavar="F",
        help="false-accept rate of the threshold (default 1e-3: needs 1,000 impostor pairs)",
    )
    p.add_argument(
        "--images", metavar="ROOT", help="the image folder of a pairs.txt or .csv (SPEC::ROOT)"
    )
    p.add_argument(
        "--max-pairs",
        type=int,
        default=3000,
        metavar="N",
        help="cap on the genuine pairs generated from a dataset spec (3000)",
    )
    add_model_arguments(p)
    add_untrained_argument(p)
    add_detector_arguments(p, auto=True)
    p.set_defaults(func=run)


def _pair_spec(args: argparse.Namespace) -> str:
    if args.images is None:
        return args.pairs
    if "::" in args.pairs or not args.pairs.endswith((".txt", ".csv")):
        raise ValueError(
            f"--images applies to a pairs.txt or .csv without ::FOLDER, not {args.pairs!r}"
        )
    return f"{args.pairs}::{args.images}"


def _photos(spec: str) -> bool:
    """Whether a pair set of ``spec`` may hold photos to detect faces in (not synthetic faces
    or a pack: those are crops)."""
    from pathlib import Path

    path = Path(spec.split("::", 1)[0])
    if "::" in spec or path.suffix in (".bin", ".txt", ".csv"):
        return True
    return path.is_dir() and not (path / "train.rec").is_file()


def run(args: argparse.Namespace) -> int:
    from marginface.backbones.checkpoint import model_json_path
    from marginface.cli._model import MISSING_MODEL, load_use_model
    from marginface.cli._use import check_positive, embed_options, make_aligner
    from marginface.data import open_pairs
    from marginface.evaluation.calibration import (
        calibrate_pair_set,
        check_far,
        describe,
        fitting_far,
        resolvable,
        write_calibration,
    )
    from marginface.evaluation.metrics import far_key
    from marginface.files import check_writable_file

    far = check_far(args.far)
    check_positive(args.max_pairs, "--max-pairs")
    spec = _pair_spec(args)
    options = embed_options(args)
    args.device = options.device
    if not args.checkpoint:
        raise ValueError(MISSING_MODEL)
    js = model_json_path(args.checkpoint)
    if js is None:
        raise ValueError(
            f"--checkpoint {args.checkpoint}: calibrate writes into the model's model.json and "
            "this model has none (a training checkpoint.pt: give its run folder or model.pt; "
            "a bare state dict: make a model folder of it with marginface import)"
        )
    check_writable_file(js, "--checkpoint's model.json")
    model, info = load_use_model(args)
    size = int(info.get("image_size") or 112)
    # a pair must be scored: a photo without a face is used whole (counted below)
    aligner = make_aligner(args, size, fallback=True)
    if aligner is not None and args.detect is None and not _photos(spec):
        aligner = None
    pair_set = open_pairs(spec, image_size=size, max_pairs=args.max_pairs, aligner=aligner)
    impostors = int((~pair_set.issame).sum())
    if not resolvable(far, impostors) or pair_set.issame.all():
        fits = fitting_far(impostors, far)
        raise ValueError(
            f"--far {far:g}: pair set {spec} has {impostors} impostor pairs, and FAR "
            f"{far:g} needs at least {round(1 / far)}"
            + (f"; use --far {far_key(fits)} or a larger set" if fits else "")
        )
    record = calibrate_pair_set(model, pair_set, far, options)
    record["pairs_spec"] = spec
    write_calibration(js, record)
    misses = getattr(aligner, "misses", 0)
    if misses:
        print(f"warning: the detector found no face in {misses} photos; they were used whole")
    print(f"calibrated {args.checkpoint}: {describe(record)}; wrote {js}")
    return 0
