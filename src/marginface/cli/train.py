"""``marginface train``: train a backbone with a margin head (see docs/training.md).

Settings come from the defaults, then a YAML file (``--config``), then the options given here;
``--head-X VALUE`` sets the head hyperparameter X (e.g. ``--head-s 64 --head-m 0.5``);
``--head-kwargs`` takes them as one mapping, flat ('{s: 64}') or per head
('{arcface: {s: 64}}': the trained head's entry is used); a cosine head's scale s is ``auto``
unless given (the scale that fits the number of classes).
With ``--resume`` the run folder's saved ``config.yaml`` is the starting point, so
``marginface train --output DIR --resume`` alone continues a run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from marginface.cli._errors import Parser
from marginface.cli._use import add_option

#: options whose value is a plain string / int / float (dest -> type)
_TYPED: dict[str, tuple[type, str]] = {
    "data": (str, "dataset spec: a folder, a .rec, or synthetic:IDSxIMAGES"),
    "head": (str, "margin head name (marginface.list_heads())"),
    "backbone": (str, "backbone name (marginface.list_backbones())"),
    "init": (
        str,
        "fine-tune: start from this model (a model folder, model.pt or checkpoint.pt); its "
        "architecture, embedding and image size are the run's",
    ),
    "backbone_lr": (
        float,
        "the backbone's learning rate as a share of --lr, the head's (default: 0.1 with "
        "--init, else 1)",
    ),
    "freeze": (int, "with --init: keep the backbone's first N stages as they are"),
    "epochs": (int, "number of epochs"),
    "batch_size": (int, "images per process per micro-batch"),
    "lr": (float, "base learning rate"),
    "output": (str, "run folder (checkpoints, models, logs)"),
    "val_every": (int, "validate every N optimizer steps (0: at each epoch end)"),
    "val_max_pairs": (
        int,
        "cap on generated genuine pairs of each --pairs dataset spec (default: sized so that "
        "validation takes under ~15%% of an epoch's time)",
    ),
    "accumulate": (int, "micro-batches per optimizer step (gradient accumulation)"),
    "optimizer": (str, "sgd or adamw"),
    "scheduler": (str, "cosine, poly or constant (after warm-up)"),
    "warmup_epochs": (
        float,
        "epochs of linear warm-up of the learning rate (default 0; with --init a fifth of the "
        "epochs)",
    ),
    "margin_warmup_epochs": (float, "epochs over which the margin blends in from 0"),
    "loss_watch": (float, "share of the run after which a stalled loss is reported (0: off)"),
    "summary_images": (int, "training images checked at the end: share nearer own centre"),
    "momentum": (float, "SGD momentum"),
    "weight_decay": (float, "weight decay"),
    "seed": (int, "seed of initialisation and data order"),
    "image_size": (int, "side of the square training images"),
    "embedding_size": (int, "embedding width D"),
    "num_workers": (int, "data loader worker processes (0: this process)"),
    "device": (str, "auto, cpu, cuda or cuda:N"),
    "max_steps": (int, "stop (with a resumable checkpoint) after this many optimizer steps"),
    "checkpoint_every": (
        int,
        "also save checkpoint.pt every N optimizer steps (0: epoch ends only); what a restarted "
        "or requeued job resumes from",
    ),
    "log_every": (int, "write log.jsonl / TensorBoard every N steps"),
    "poly_power": (float, "power of the polynomial decay (InsightFace: 2)"),
    "min_lr": (float, "learning rate at the end of the decay"),
    "val_batch_size": (int, "batch size of validation embedding"),
    "max_bad_images": (int, "stop after this many unreadable images (default 1000)"),
    "sample_rate": (
        float,
        "Partial FC: fraction of class centres used per step (implies --partial-fc)",
    ),
}

_METAVAR = {
    "data": "SPEC",
    "output": "DIR",
    "head": "NAME",
    "backbone": "NAME",
    "init": "MODEL",
    "optimizer": "NAME",
    "scheduler": "NAME",
    "device": "DEVICE",
}

#: config keys whose flag is not the key itself: dest -> (flag, older spellings kept as aliases)
_FLAGS = {
    "val_max_pairs": ("--max-pairs", ["--val-max-pairs"]),
    "num_workers": ("--workers", ["--num-workers"]),
    "checkpoint_every": ("--save-every", ["--checkpoint-every"]),
}

_HEAD_PREFIX = "head_hp_"


def _head_hparam_names() -> list[str]:
    """Every hyperparameter name of every registered head (each becomes ``--head-NAME``)."""
    from marginface.heads import head_hparams, list_heads

    names: set[str] = set()
    for head in list_heads():
        names.update(head_hparams(head))
    return sorted(names)


class _TrainParser(Parser):
    """The train command's parser: its ``--head-NAME`` options come from the heads registry,
    which imports torch, so they are added the first time this parser parses or prints its
    help, never when another command (or ``marginface --help``) builds the command line."""

    _head_options_added = False

    def _add_head_options(self) -> None:
        if self._head_options_added:
            return
        self._head_options_added = True
        from marginface.cli._train_help import head_groups_text, head_table, option_help
        from marginface.training.config import parse_value

        table = head_table()
        self.add_argument_group(
            "heads (--head NAME) and the --head-X options each takes (train's default)",
            head_groups_text(table),
        )
        hp = self.add_argument_group(
            "head hyperparameters: --head-X V sets X of the trained head (passed to "
            "create_head; a head that does not take X refuses it)"
        )
        for name in _head_hparam_names():
            hp.add_argument(
                f"--head-{name.replace('_', '-')}",
                dest=_HEAD_PREFIX + name,
                type=parse_value,
                metavar="V",
                help=option_help(name, table),
            )

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._add_head_options()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_head_options()
        self._add_defaults()
        return super().format_help()

    def _add_defaults(self) -> None:
        """Each config option's help says its default (TrainConfig's; imported only for the
        help, which needs the trainer's package)."""
        from marginface.cli._train_help import with_default

        for action in self._actions:
            flag = action.nargs == 0  # --resume, --quiet ...: off unless given
            if action.help and not flag and not action.dest.startswith(_HEAD_PREFIX):
                action.help = with_default(action.help, action.dest)


def _mapping(text: str) -> dict[str, Any]:
    from marginface.settings import load_settings
    from marginface.text import short_repr

    try:
        value = load_settings(text, "")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML/JSON mapping, got {short_repr(text)}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a face model with a margin head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    p.__class__ = _TrainParser  # the --head-NAME options are added when it is used
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of config keys")
    for dest, (kind, text) in _TYPED.items():
        metavar = _METAVAR.get(dest, "N" if kind is int else "X")
        flag, aliases = _FLAGS.get(dest, ("--" + dest.replace("_", "-"), []))
        add_option(
            p,
            flag,
            aliases=aliases,
            dest=dest,
            type=kind,
            help=text,
            metavar=metavar,
        )
    p.add_argument("--amp", choices=["bf16", "fp16", "none"], help="mixed precision")
    p.add_argument(
        "--init-centres",
        dest="init_centres",
        choices=["imprint", "random"],
        help="with --init: class centres start at each identity's mean embedding (imprint, "
        "the default) or random",
    )
    p.add_argument(
        "--grad-clip",
        dest="grad_clip",
        type=float,
        metavar="X",
        help="clip the global gradient L2 norm at X (0: off)",
    )
    add_option(
        p,
        "--pairs",
        aliases=["--val"],
        dest="val",
        action="append",
        metavar="SPEC",
        help="validation pair set (repeatable): a .bin, a pairs.txt, or a dataset spec",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --output exactly")
    p.add_argument(
        "--partial-fc",
        dest="partial_fc",
        action="store_true",
        help="shard the class centres over the processes (marginface.parallel.PartialFC)",
    )
    add_option(
        p,
        "--quiet",
        aliases=["--no-progress"],
        dest="progress",
        action="store_false",
        help="no progress bar",
    )
    p.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="no TensorBoard event files",
    )
    p.add_argument(
        "--head-kwargs",
        dest="head_kwargs",
        type=_mapping,
        metavar="MAPPING",
        help="head hyperparameters as YAML, flat '{s: 64, m: 0.5}' or per head "
        "'{arcface: {s: 64}}' (the trained head's entry is used)",
    )
    p.add_argument(
        "--backbone-kwargs",
        dest="backbone_kwargs",
        type=_mapping,
        metavar="MAPPING",
        help="backbone options as YAML, e.g. '{dropout: 0.2}'",
    )
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given on the command line (nothing for options left out);
    ``head_kwargs`` as ``--head-kwargs`` gave it (flat or per head), the ``--head-NAME``
    options under the extra key ``head_options``."""
    values = {
        k: v for k, v in vars(args).items() if k not in ("command", "func", "config", "debug")
    }
    names = [k for k in values if k.startswith(_HEAD_PREFIX)]
    options = {k[len(_HEAD_PREFIX) :]: values.pop(k) for k in names}
    if options:
        values["head_options"] = options
    if values.get("grad_clip") == 0:
        values["grad_clip"] = None
    return values


def build_config(args: argparse.Namespace):
    """defaults < saved OUTPUT/config.yaml (on --resume) < --config FILE < command line.

    ``head_kwargs`` may be per head in any layer (``{arcface: {s: 64}}``): the entry of the
    head being trained is used (:func:`marginface.cli._use.head_kwargs_for`)."""
    from marginface.cli._use import head_kwargs_for
    from marginface.training.config import TrainConfig, load_yaml, resolve_config

    cli = overrides_from_args(args)
    options = cli.pop("head_options", {})
    from_file = load_yaml(args.config) if getattr(args, "config", None) else {}
    layers: list[dict[str, Any]] = []
    if cli.get("resume"):
        output = cli.get("output") or from_file.get("output")
        saved = Path(output) / "config.yaml" if output else None
        if saved is None or not saved.is_file():
            where = saved.parent if saved else "the default output folder"
            raise FileNotFoundError(f"--resume: no config.yaml in {where}; is --output right?")
        layers.append(
            {k: v for k, v in load_yaml(saved).items() if k not in ("resume", "max_steps")}
        )
    layers += [from_file, cli, {"head_kwargs": options} if options else {}]
    head = next((layer["head"] for layer in reversed(layers) if "head" in layer), None)
    head = TrainConfig.head if head is None else head
    for layer in layers:
        if isinstance(layer.get("head_kwargs"), dict) and isinstance(head, str):
            layer["head_kwargs"] = head_kwargs_for(layer["head_kwargs"], [head])[head]
    return resolve_config(*layers)


class _TqdmLines(logging.Handler):
    """The trainer's messages as ``marginface train: [warning: ]...`` lines on stderr, written
    above the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        kind = "warning: " if record.levelno >= logging.WARNING else ""
        tqdm.write(f"marginface train: {kind}{record.getMessage()}", file=sys.stderr)


def _show_trainer_messages() -> None:
    log = logging.getLogger("marginface.train")
    if not any(isinstance(h, _TqdmLines) for h in log.handlers):
        log.addHandler(_TqdmLines())
    log.setLevel(logging.INFO)
    log.propagate = False


def run(args: argparse.Namespace) -> int:
    from marginface.training import TrainingDiverged, train

    config = build_config(args)
    _show_trainer_messages()
    try:
        result = train(config)
    except TrainingDiverged as exc:
        print(f"marginface train: error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return 130 if result.stopped == "interrupted" else 0  # rank 0 reports for all
    if result.stopped == "interrupted":
        print(
            f"marginface train: interrupted after step {result.steps}; checkpoint saved in "
            f"{result.output_dir}; continue with: marginface train --output "
            f"{result.output_dir} --resume",
            file=sys.stderr,
        )
        return 130
    last = result.history[-1]["loss"] if result.history else float("nan")
    print(
        f"trained {result.steps} steps ({result.stopped}) in {result.train_time_s:.1f} s, "
        f"last loss {last:.4f}; model: {result.output_dir / 'model.pt'}"
    )
    if result.summary is not None:
        print(
            f"training images nearer their own class centre than any other: "
            f"{result.summary['nearer_own_share']:.1%} of {result.summary['images']}"
        )
    if result.verdict is not None:
        print(f"verdict: {result.verdict.line}")
    if result.best is not None:
        print(
            f"best validation: score {result.best['score']:.4f} at step {result.best['step']} "
            f"(threshold {result.best['threshold']:.4f}): {result.output_dir / 'best'}"
        )
    print(_calibration_line(result.output_dir, config))
    return 0


def _calibration_line(output: Path, config) -> str:
    """What the saved model's calibration is (or why it has none)."""
    import json

    from marginface.evaluation.calibration import DEFAULT_FAR, describe
    from marginface.evaluation.metrics import far_key

    cal = json.loads((Path(output) / "model.json").read_text()).get("calibration")
    if cal is None:
        why = "no validation set (--pairs)" if not config.val else "too few impostor pairs"
        return (
            f"not calibrated: {why}; run marginface calibrate --checkpoint {output} "
            "--pairs SET for a threshold at a known FAR"
        )
    line = f"calibrated on the validation set: {describe(cal)}"
    if cal["far"] != DEFAULT_FAR:
        line += (
            f" (FAR {far_key(DEFAULT_FAR)} needs {round(1 / DEFAULT_FAR)} impostor pairs; "
            f"the set has {cal['impostor']})"
        )
    return line
