"""``marginface demo``: train several heads the same way and compare them (report + plots)."""

from __future__ import annotations

import argparse


def _default(name: str) -> str:
    """``default V`` of a :class:`~marginface.demo.config.DemoConfig` field, and its
    ``--quick`` value where that differs: the help says what the demo uses."""
    from marginface.demo.config import QUICK, DemoConfig

    value = DemoConfig.__dataclass_fields__[name].default
    text = f"default {value:g}" if isinstance(value, float) else f"default {value}"
    if name in QUICK and QUICK[name] != value:
        quick = QUICK[name]
        text += f"; --quick: {quick:g}" if isinstance(quick, float) else f"; --quick: {quick}"
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="compare margin heads on the embedded synthetic faces (report with plots)",
        description=(
            "Trains every listed head with the same small backbone, data, schedule and seed on "
            "the embedded synthetic identity dataset, evaluates each on identities never seen "
            "in training (10-fold accuracy, TAR@FAR, EER), trains each again with a 2-D and a "
            "3-D embedding on a few identities, and writes OUTPUT/report.html, report.md and "
            "metrics.json. No download needed."
        ),
    )
    parser.add_argument(
        "--heads",
        default="softmax,sphereface,cosface,arcface",
        help="comma-separated heads (default softmax,sphereface,cosface,arcface)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run, CI's smoke test: smaller data, model and schedule (the --quick values "
        "below); 47 s measured on 2 quiet cores, much longer on a busy machine (docs/demo.md)",
    )
    parser.add_argument("--output", default="demo_output", help="report folder (demo_output)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="train each head with seeds 0..N-1 (default 1)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--epochs", type=int, help=f"training epochs of the comparison ({_default('epochs')})"
    )
    parser.add_argument(
        "--batch-size", type=int, help=f"batch size of the comparison ({_default('batch_size')})"
    )
    parser.add_argument(
        "--optimizer",
        choices=("adamw", "sgd"),
        help=f"optimizer of every run ({_default('optimizer')})",
    )
    parser.add_argument(
        "--lr", type=float, help=f"learning rate of the comparison ({_default('lr')})"
    )
    parser.add_argument(
        "--embedding-size",
        type=int,
        help=f"embedding width of the comparison ({_default('embedding_size')})",
    )
    parser.add_argument(
        "--image-size", type=int, help=f"image side in pixels ({_default('image_size')})"
    )
    parser.add_argument(
        "--difficulty",
        type=float,
        help=f"synthetic difficulty 0..4 ({_default('difficulty')})",
    )
    parser.add_argument(
        "--data", metavar="SPEC", help="training data instead of the synthetic identities "
        "(a folder of identity folders, a .rec pack, or a synthetic: spec)",
    )  # fmt: skip
    parser.add_argument(
        "--test-data", metavar="SPEC", help="held-out identities (pairs are generated from it); "
        "must not share identities with --data",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch CPU threads per training run (default 0 = auto: the cores shared out "
        "over the runs going on side by side)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=0,
        help="training runs side by side in worker processes (default 0 = auto: one per core)",
    )  # fmt: skip
    parser.add_argument(
        "--head-kwargs", metavar="MAPPING", help="head hyperparameters replacing the demo's, as "
        "YAML or JSON: per head, e.g. '{arcface: {s: 64}, cosface: {s: 64}}', or flat, "
        "e.g. '{s: 64}' (given to every head that has it: the heads' usual scale)",
    )  # fmt: skip
    parser.add_argument("--no-toy", action="store_true", help="skip the 2-D / 3-D toy runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from marginface.demo import make_config, run_demo

    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    if bool(args.data) != bool(args.test_data):
        raise ValueError("--data and --test-data go together (training and held-out identities)")
    config = make_config(
        quick=args.quick,
        heads=heads,
        output=args.output,
        seeds=args.seeds,
        device=args.device,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        embedding_size=args.embedding_size,
        image_size=args.image_size,
        difficulty=args.difficulty,
        data=args.data,
        test_data=args.test_data,
        toy_dims=[] if args.no_toy else None,
        threads=args.threads,
        workers=args.workers,
        progress=not args.quiet,
    )
    if args.head_kwargs:
        from marginface.cli._use import head_kwargs_for
        from marginface.settings import load_settings

        given = load_settings(args.head_kwargs, "--head-kwargs")
        per_head = {h: kw for h, kw in head_kwargs_for(given, heads).items() if kw}
        config.head_kwargs.update(per_head)
        config.toy_head_kwargs.update(per_head)
    outcome = run_demo(config)
    print(outcome.table)
    print(f"report: {outcome.report_html} (and {outcome.report_md}, {outcome.metrics_json})")
    return 0
