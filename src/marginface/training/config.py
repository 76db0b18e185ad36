"""The training configuration: a dataclass, YAML files, command-line overrides.

Precedence (lowest first): the defaults below, a YAML file (``--config``), command-line
options. Keys are the field names of :class:`TrainConfig` (``-`` and ``_`` both accepted in
YAML); an unknown key is a ValueError listing the valid ones. The resolved configuration is
saved as ``OUTPUT/config.yaml``, which is itself a valid ``--config`` file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from marginface.settings import load_settings
from marginface.text import cut

AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "poly", "constant")
INIT_CENTRES = ("imprint", "random")

#: what a run from scratch trains when these keys are left out (None)
SCRATCH_MODEL = {"backbone": "iresnet50", "embedding_size": 512, "image_size": 112}
#: epochs left out: from scratch, and fine-tuning from ``init`` (a model that already embeds
#: faces needs fewer)
SCRATCH_EPOCHS, FINETUNE_EPOCHS = 20, 5
#: warm-up left out when fine-tuning: this share of the epochs (none from scratch), so the
#: first steps' gradients, from centres the backbone has not seen, move it gently
FINETUNE_WARMUP_SHARE = 0.2
#: optimizer left out: from scratch, and fine-tuning from ``init``. Plain SGD at the rate that
#: trains a network from scratch moved a published model's features away within three steps (an
#: ONNX export folds BatchNorm into the convolutions, so nothing holds a layer's scale); AdamW's
#: per-weight steps kept them. Measured: benchmarks/finetune_published.py (docs/published.md)
SCRATCH_OPTIMIZER, FINETUNE_OPTIMIZER = "sgd", "adamw"
#: learning rate left out: the optimizer's
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
#: the backbone's learning rate as a share of the head's when fine-tuning (``backbone_lr`` left
#: out with ``init``); from scratch it is 1. Measured: benchmarks/finetune_backbone_lr.py
#: (docs/training.md, "Fine-tune a model")
FINETUNE_BACKBONE_LR = 0.1

#: whole-number keys checked first, as ``(key, minimum, None allowed)``
_SIZE_KEYS = (("epochs", 1, False), ("batch_size", 1, False), ("accumulate", 1, False))
#: the running counts, checked after the model and fine-tuning keys
_COUNT_KEYS = (
    ("log_every", 1, False),
    ("val_batch_size", 1, False),
    ("val_max_pairs", 1, True),
    ("checkpoint_every", 0, False),
    ("val_every", 0, False),
    ("num_workers", 0, False),
    ("seed", 0, False),
    ("min_free_bytes", 0, False),
    ("summary_images", 0, False),
    ("max_steps", 0, True),
    ("max_bad_images", 0, True),
)
#: keys that name one of a few options
_CHOICES = (("amp", AMP_MODES), ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS))
#: keys that are finite numbers >= 0 (their upper bounds are checked one by one)
_NON_NEGATIVE_KEYS = ("lr", "momentum", "weight_decay", "warmup_epochs", "poly_power", "min_lr")

#: keys that may change between an interrupted run and its ``--resume`` without breaking the
#: exact continuation (everything else must match the checkpoint's configuration)
RESUME_FREE_KEYS = frozenset(
    {
        "output",
        "resume",
        "max_steps",
        "epochs",
        "num_workers",
        "progress",
        "log_every",
        "val",
        "val_every",
        "val_max_pairs",
        "val_batch_size",
        "checkpoint_every",
        "device",
        "tensorboard",
        "min_free_bytes",
        "loss_watch",
        "summary_images",
        "max_bad_images",
    }
)


@dataclass
class TrainConfig:
    """Everything ``marginface train`` needs. Sizes in images, rates per optimizer step.

    Data and model: ``data`` (dataset spec for ``marginface.data.open_dataset``), ``head`` and
    ``head_kwargs`` (``create_head``), ``backbone`` and ``backbone_kwargs``
    (``create_backbone``), ``embedding_size``, ``image_size``; left out (None) they are
    :data:`SCRATCH_MODEL`'s, or with ``init`` the model's.

    Fine-tuning (:mod:`marginface.training.finetune`): ``init`` (a model for
    ``marginface.backbones.checkpoint.load_model``: the backbone starts from it, and its
    architecture, embedding and image size are the run's), ``init_centres`` (``imprint``: each
    class centre starts at its identity's mean normalised embedding; ``random``; default
    imprint with ``init``), ``backbone_lr`` (the backbone's learning rate as a share of
    ``lr``, the head's; default :data:`FINETUNE_BACKBONE_LR` with ``init``, else 1),
    ``freeze`` (the backbone's first N stages stay as they are, BatchNorm statistics
    included). ``epochs`` and ``warmup_epochs`` left out (None): from scratch
    :data:`SCRATCH_EPOCHS` and none; with ``init`` :data:`FINETUNE_EPOCHS` and
    :data:`FINETUNE_WARMUP_SHARE` of the epochs; ``optimizer`` left out: SGD from scratch,
    AdamW with ``init``; ``lr`` left out: the optimizer's (:data:`DEFAULT_LR`: SGD 0.1,
    AdamW 1e-3).

    Optimisation: ``epochs``, ``batch_size`` (per process), ``accumulate`` (micro-batches per
    optimizer step), ``optimizer`` (sgd / adamw) with ``lr``, ``momentum``, ``weight_decay``;
    ``scheduler`` (cosine / poly / constant) after ``warmup_epochs`` of linear warm-up, with
    ``poly_power`` and ``min_lr``; ``grad_clip`` (max global L2 norm, None = off); ``amp``
    (none / bf16 / fp16); ``seed``.

    Head: ``head_kwargs`` without ``s`` (or with ``s: auto``) gives every cosine head the
    scale that fits the number of classes (:func:`marginface.heads.scale.auto_scale`; the
    library's ``create_head`` keeps the papers' numbers); ``margin_warmup_epochs`` blends the
    margin in linearly over the first epochs (target ``w psi(cos) + (1 - w) cos``, w from 0 to
    1; 0 = the full margin from the first step).

    Classifier: ``partial_fc`` shards the class centres over the processes
    (:class:`marginface.parallel.PartialFC`) instead of replicating the head; ``sample_rate``
    (0 < r <= 1) below 1 samples the centres each step (Partial FC; sets ``partial_fc``).

    Running: ``output`` folder, ``resume``, ``max_steps`` (stop after this many optimizer steps
    in all, saving a resumable checkpoint; None = run all epochs), ``checkpoint_every`` (extra
    checkpoints every N steps; 0 = only at epoch ends), ``log_every``, ``val`` (pair-set specs
    for ``open_pairs``), ``val_every`` (steps; 0 = at the end of each epoch),
    ``val_max_pairs`` (cap on the genuine pairs generated from a dataset spec; None = sized
    so that validation takes under :data:`marginface.training.validation.VAL_SHARE` of an
    epoch's time), ``val_batch_size``, ``num_workers``, ``device`` (auto / cpu / cuda /
    cuda:N), ``progress`` (progress bar), ``tensorboard``, ``min_free_bytes`` (extra free disk
    space demanded beyond the estimated size of the saved files), ``max_bad_images``
    (unreadable images skipped before the run stops with their list; None = no limit),
    ``loss_watch`` (share of the run after which a loss still at the no-learning plateau is
    reported; 0 = off), ``summary_images`` (training images embedded at the end for the share
    nearer their own class centre; 0 = off).
    """

    data: str | None = None
    head: str = "arcface"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone: str | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    embedding_size: int | None = None
    image_size: int | None = None
    init: str | None = None
    init_centres: str | None = None
    backbone_lr: float | None = None
    freeze: int = 0
    epochs: int | None = None
    batch_size: int = 128
    accumulate: int = 1
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "poly"
    warmup_epochs: float | None = None
    margin_warmup_epochs: float = 0.0
    poly_power: float = 2.0
    min_lr: float = 0.0
    grad_clip: float | None = None
    partial_fc: bool = False
    sample_rate: float = 1.0
    amp: str = "none"
    seed: int = 0
    output: str = "runs/train"
    resume: bool = False
    max_steps: int | None = None
    checkpoint_every: int = 0
    log_every: int = 1
    val: list[str] = field(default_factory=list)
    val_every: int = 0
    val_max_pairs: int | None = None
    val_batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    min_free_bytes: int = 50_000_000
    loss_watch: float = 0.5
    summary_images: int = 2048
    max_bad_images: int | None = 1000

    def __post_init__(self) -> None:
        self._coerce_numbers()
        self._fill_defaults()
        self.validate()
        self._resolve()

    def _fill_defaults(self) -> None:
        """Keys left out (None) get the default of the kind of run: from scratch, or
        fine-tuning from ``init`` (whose model keys the trainer takes from the model)."""
        tuning = self.init is not None
        if not tuning:
            for key, value in SCRATCH_MODEL.items():
                if getattr(self, key) is None:
                    setattr(self, key, value)
        if self.epochs is None:
            self.epochs = FINETUNE_EPOCHS if tuning else SCRATCH_EPOCHS
        if self.optimizer is None:
            self.optimizer = FINETUNE_OPTIMIZER if tuning else SCRATCH_OPTIMIZER
        if self.lr is None and self.optimizer in DEFAULT_LR:  # else validate() names it
            self.lr = DEFAULT_LR[self.optimizer]
        if self.warmup_epochs is None:
            share = FINETUNE_WARMUP_SHARE if tuning else 0.0
            self.warmup_epochs = share * self.epochs if _is_number(self.epochs, 1) else 0.0
        if self.backbone_lr is None:
            self.backbone_lr = FINETUNE_BACKBONE_LR if tuning else 1.0
        if self.init_centres is None:
            self.init_centres = "imprint" if tuning else "random"

    def _resolve(self) -> None:
        """Settings that others imply: a ``sample_rate`` below 1 samples the centres of
        Partial FC, so it sets ``partial_fc`` (the saved config.yaml says so)."""
        if self.sample_rate < 1:
            self.partial_fc = True

    def _coerce_numbers(self) -> None:
        """Numbers written as strings (YAML reads ``1e-4`` as a string) become numbers."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                continue
            kind = str(f.type)
            try:
                if kind.startswith("float"):
                    setattr(self, f.name, float(value))
                elif kind.startswith("int"):
                    setattr(self, f.name, int(value))
            except ValueError:
                pass  # left as is: validate() names the key and the value

    # ------------------------------------------------------------------------------ checks
    def validate(self) -> None:
        """ValueError naming the key and the value for anything out of range (the rules are
        checked in order; the first broken one is reported)."""
        self._need_ints(_SIZE_KEYS)
        for key in ("embedding_size", "image_size"):  # None until the init model says
            if getattr(self, key) is not None or self.init is None:
                self._need_int(key, 1)
        self._validate_init()
        self._need_ints(_COUNT_KEYS)
        self._validate_names()
        self._validate_optimisation()
        self._validate_run()

    def _validate_names(self) -> None:
        """Paths, names and the choices among named options."""
        self._need(
            isinstance(self.output, str) and self.output != "", "output", "must be a folder path"
        )
        self._need(
            self.data is None or isinstance(self.data, str), "data", "must be a dataset spec"
        )
        self._need(isinstance(self.head, str), "head", "must be a name")
        self._need(
            isinstance(self.backbone, str) or (self.backbone is None and self.init is not None),
            "backbone",
            "must be a name",
        )
        for key, choices in _CHOICES:
            self._need(getattr(self, key) in choices, key, f"must be one of {', '.join(choices)}")

    def _validate_optimisation(self) -> None:
        """Rates, shares of the run and the classifier's sampling."""
        for key in _NON_NEGATIVE_KEYS:
            self._need(_is_number(getattr(self, key), 0.0), key, "must be a finite number >= 0")
        self._need(self.lr > 0, "lr", "must be > 0")
        self._need(self.momentum < 1, "momentum", "must be in [0, 1)")
        self._need(self.weight_decay < 1, "weight_decay", "must be in [0, 1)")
        self._need(self.min_lr <= self.lr, "min_lr", f"must not exceed lr {self.lr}")
        self._need(
            _is_number(self.margin_warmup_epochs, 0.0) and self.margin_warmup_epochs <= self.epochs,
            "margin_warmup_epochs",
            f"must be a number in [0, epochs {self.epochs}]",
        )
        self._need(
            _is_number(self.loss_watch, 0.0) and self.loss_watch < 1,
            "loss_watch",
            "must be a share of the run in [0, 1)",
        )
        self._need(
            _is_number(self.sample_rate, 0.0) and 0 < self.sample_rate <= 1,
            "sample_rate",
            "must be a number in (0, 1]",
        )
        self._need(isinstance(self.partial_fc, bool), "partial_fc", "must be true or false")
        self._need(
            self.sample_rate == 1 or self.accumulate == 1,
            "sample_rate",
            f"below 1 needs accumulate 1 (one optimizer step per forward), "
            f"accumulate is {self.accumulate}",
        )
        self._need(
            self.warmup_epochs <= self.epochs,
            "warmup_epochs",
            f"must not exceed epochs {self.epochs}",
        )
        self._need(
            self.grad_clip is None or (_is_number(self.grad_clip, 0.0) and self.grad_clip > 0),
            "grad_clip",
            "must be None (off) or a number > 0",
        )

    def _validate_run(self) -> None:
        """Validation sets, the keyword mappings and the device."""
        self._need(
            isinstance(self.val, list) and all(isinstance(v, str) for v in self.val),
            "val",
            "must be a list of pair-set specs",
        )
        for key in ("head_kwargs", "backbone_kwargs"):
            self._need(isinstance(getattr(self, key), dict), key, "must be a mapping")
        device_ok = isinstance(self.device, str) and (
            self.device in ("auto", "cpu") or self.device.startswith("cuda")
        )
        self._need(device_ok, "device", "must be auto, cpu, cuda or cuda:N")

    def _validate_init(self) -> None:
        """The fine-tuning keys (the model itself is checked when the trainer loads it)."""
        self._need(
            self.init is None or (isinstance(self.init, str) and self.init != ""),
            "init",
            "must be the path of a model (a model folder, model.pt or checkpoint.pt)",
        )
        self._need(
            self.init_centres in INIT_CENTRES,
            "init_centres",
            f"must be one of {', '.join(INIT_CENTRES)}",
        )
        self._need(
            self.init is not None or self.init_centres == "random",
            "init_centres",
            "imprint needs a model to embed the training images with (init)",
        )
        self._need(_is_number(self.backbone_lr, 0.0), "backbone_lr", "must be a finite number >= 0")
        self._need_int("freeze", 0)
        self._need(
            self.freeze == 0 or self.init is not None,
            "freeze",
            "needs a model to start from (init): frozen random stages would learn nothing",
        )

    def _need(self, ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ValueError(f"config {key}: {what}, got {getattr(self, key)!r}")

    def _need_ints(self, rules: tuple[tuple[str, int, bool], ...]) -> None:
        """Each ``(key, minimum, optional)``: an int >= minimum, or None where optional."""
        for key, minimum, optional in rules:
            if not (optional and getattr(self, key) is None):
                self._need_int(key, minimum)

    def _need_int(self, key: str, minimum: int) -> None:
        v = getattr(self, key)
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= minimum
        self._need(ok, key, f"must be an int >= {minimum}")

    # ------------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML / JSON / checkpoint friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping of field names (``-`` or ``_``); unknown keys are a ValueError."""
        return cls(**normalize_keys(values, source))


def _is_number(value: Any, minimum: float) -> bool:
    """A finite int or float >= ``minimum`` (inf and NaN are never a setting)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and value >= minimum


def valid_keys() -> list[str]:
    """The field names of :class:`TrainConfig`, in declaration order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def normalize_keys(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """``values`` with ``-`` in keys turned into ``_``; ValueError for keys not in the config."""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{source}: expected a mapping of config keys, got {type(values).__name__}"
        )
    out = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(out) - set(valid_keys()))
    if unknown:
        raise ValueError(
            f"{source}: unknown config key(s) {', '.join(cut(k, 100) for k in unknown[:5])}; "
            f"valid keys: {', '.join(valid_keys())}"
        )
    return out


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict of checked keys (not yet a :class:`TrainConfig`)."""
    from marginface.files import read_text

    path = Path(path)
    text = read_text(path, "config file")
    values = load_settings(text, f"config file {path}") or {}
    return normalize_keys(values, f"config file {path}")


def resolve_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """Merge mappings of config keys (later ones win; ``*_kwargs`` dicts merge key by key)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in normalize_keys(layer).items():
            if key.endswith("_kwargs") and isinstance(value, Mapping):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return TrainConfig(**merged)


def config_to_yaml(config: TrainConfig) -> str:
    """The config as YAML text, keys in declaration order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def parse_value(text: str) -> Any:
    """A command-line value: ``64`` -> int, ``0.5`` / ``1e-4`` -> float, ``true`` -> bool,
    ``[1, 2]`` -> list (YAML, read by :func:`marginface.settings.load_settings`: no aliases,
    bounded nesting), anything else the string itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return load_settings(text, "", text_if_invalid=True)
