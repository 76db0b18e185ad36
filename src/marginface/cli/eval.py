"""``marginface eval``: verification metrics on pair sets (and optional identification), with a
Markdown + self-contained HTML report."""

from __future__ import annotations

import argparse

from marginface.cli._errors import print_warning
from marginface.cli._use import add_detect_cache_argument, add_detector_arguments, add_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate checkpoints on verification pair sets, write metrics.json and a report",
        description=(
            "LFW-style 10-fold accuracy, AUC, EER and TAR@FAR of one or more checkpoints on "
            "one or more pair sets; writes OUTPUT/metrics.json, OUTPUT/report.md and a "
            "self-contained OUTPUT/report.html (ROC curves, score histograms, overlays)."
        ),
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="PATH",
        help="run folder, model.pt or checkpoint.pt (repeat to compare several)",
    )
    p.add_argument(
        "--pairs",
        action="append",
        default=[],
        metavar="SPEC",
        help="pair set: a .bin, a pairs.txt (or pairs.txt::FOLDER), or a dataset spec such "
        "as synthetic:50x6,first=100000 (repeatable)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no flip test")
    p.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)"
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_option(
        p,
        "--workers",
        aliases=["--num-workers"],
        type=int,
        default=0,
        metavar="N",
        help="image decoding processes (default 0: this process)",
    )
    p.add_argument(
        "--max-pairs",
        type=int,
        metavar="N",
        default=3000,
        help="cap on generated genuine pairs for dataset specs (default 3000)",
    )
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="folds of the accuracy (default: what a pairs file's header says, LFW's 10 300: "
        "10; else 10)",
    )
    p.add_argument(
        "--fold-seed",
        type=int,
        metavar="SEED",
        help="cut the folds from the pairs shuffled by SEED (default: in file order, LFW's "
        "protocol), for a list ordered by class",
    )
    p.add_argument(
        "--identification",
        metavar="FOLDER",
        help="also rank-1/rank-5/CMC on this dataset (gallery = first image of each identity)",
    )
    p.add_argument(
        "--ijb",
        metavar="FOLDER",
        help="also IJB-B/IJB-C 1:1 template verification (FOLDER holds meta/ and loose_crop/), "
        "as InsightFace's eval_ijbc.py computes it",
    )
    p.add_argument(
        "--ijb-target", choices=["IJBB", "IJBC"], help="which, when FOLDER/meta holds both"
    )
    p.add_argument("--gallery-list", metavar="FILE", help="gallery image paths, one a line")
    p.add_argument("--probe-list", metavar="FILE", help="probe image paths, one a line")
    p.add_argument("--title", default="marginface evaluation", metavar="TEXT", help="report title")
    p.add_argument(
        "--threshold-grid",
        choices=["exact", "insightface"],
        default="exact",
        help="fold thresholds of the accuracy: every distinct score (exact, default) or "
        "InsightFace's calculate_roc grid (squared distance arange(0, 4, 0.01)), to compare "
        "with papers",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_detector_arguments(p)
    add_detect_cache_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from marginface.cli._use import check_positive, embed_options, make_aligner
    from marginface.evaluation.config import EvalConfig
    from marginface.evaluation.evaluate import run_evaluation
    from marginface.evaluation.metrics import far_key
    from marginface.evaluation.run_report import write_evaluation
    from marginface.files import check_writable_dir

    check_positive(args.max_pairs, "--max-pairs")
    if args.folds is not None and args.folds < 2:
        raise ValueError(
            f"--folds must be >= 2 (a threshold is chosen on the other folds), got {args.folds}"
        )
    options = embed_options(args)
    args.device = options.device
    check_writable_dir(args.output, "--output")
    # a pair must be scored even when no face is found: the whole photo then (counted)
    aligner = make_aligner(args, 112, fallback=True, cache=True)
    config = EvalConfig(
        checkpoints=args.checkpoint,
        pairs=args.pairs,
        max_pairs=args.max_pairs,
        n_folds=args.folds,
        fold_seed=args.fold_seed,
        threshold_grid=args.threshold_grid,
        identification=args.identification,
        gallery_list=args.gallery_list,
        probe_list=args.probe_list,
        ijb=args.ijb,
        ijb_target=args.ijb_target,
        title=args.title,
    )
    result = run_evaluation(config, options, aligner=aligner)
    paths = write_evaluation(result, args.output)
    for ckpt, per in result.verification.items():
        for name, m in per.items():
            tars = ", ".join(
                f"TAR@{far_key(f)} {100 * t:.2f}%" for f, t in sorted(m["tar_at_far"].items())
            )
            print(
                f"{ckpt} / {name}: accuracy {100 * m['accuracy']:.2f} +- "
                f"{100 * m['accuracy_std']:.2f}%, AUC {m['auc']:.4f}, EER {100 * m['eer']:.2f}%"
                + (f", {tars}" if tars else "")
            )
    for ckpt, m in result.identification.items():
        print(
            f"{ckpt} / identification: rank-1 {100 * m['rank1']:.2f}%, "
            f"rank-5 {100 * m['rank5']:.2f}%"
        )
    for ckpt, m in result.ijb.items():
        tars = ", ".join(f"TAR@{far} {100 * t:.2f}%" for far, t in sorted(m["tar_at_far"].items()))
        print(f"{ckpt} / {m['target']} 1:1: {m['num_pairs']} template pairs, {tars}")
    if aligner is not None:
        cache = aligner.cache
        where = f" in {cache.root.parent}" if cache.root is not None else " (this run only)"
        print(
            f"faces: {cache.misses} photos detected, {cache.hits} look-ups answered by the "
            f"detection cache{where}"
        )
    for w in result.warnings:
        print_warning(w)
    print(f"wrote {paths['metrics']}, {paths['markdown']}, {paths['html']}")
    return 0
