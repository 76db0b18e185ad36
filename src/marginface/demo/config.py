"""The demo's settings: one dataclass, a default and a ``--quick`` preset.

Every head is trained with the same backbone, data, schedule and seed; only the head (and its
usual hyperparameters, ``marginface.heads.head_hparams``) changes. Where the demo departs from
a head's usual defaults, :data:`HEAD_OVERRIDES` / :data:`TOY_OVERRIDES` say so and the report
lists it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from marginface.checks import is_int_at_least

DEFAULT_HEADS = ("softmax", "sphereface", "cosface", "arcface")

#: departures from the heads' usual defaults in the main comparison, beyond the scale: none.
#: The scale s of the cosine heads is ``auto`` (as in ``marginface train``): the usual s = 64 is
#: tuned for ~10^5 identities; on the demo's few hundred identities it does not train (measured,
#: docs/training.md), so every cosine head gets the scale that fits its number of classes,
#: :func:`marginface.heads.scale.auto_scale`; the report lists the value and the rule.
HEAD_OVERRIDES: dict[str, dict[str, Any]] = {}

#: why (printed in the report under the list of departures)
SCALE_REASON = (
    "Why s = auto instead of the usual s = 64: s = 64 suits ~10^5 identities; on a few hundred "
    "the margin term dominates the loss from the first step and training stalls at the loss of a "
    "model that tells no class apart (measured in docs/training.md). s = auto is the smallest "
    "scale at which a sample on its class centre, all other centres orthogonal, has probability "
    "0.99 (CosFace's bound with the margin). The margins keep their usual values. Run "
    '--head-kwargs \'{"cosface": {"s": 64}, "arcface": {"s": 64}}\' to see the usual scale.'
)

#: departures from the heads' usual hyperparameters in the toy, with their measured reason
#: (:data:`TOY_OVERRIDES_REASON`, docs/demo.md). The cosine heads' s is "auto" (for C classes).
TOY_OVERRIDES: dict[str, dict[str, Any]] = {"sphereface": {"base": 0.0, "lambda_min": 0.0}}

TOY_OVERRIDES_REASON = (
    "Why SphereFace trains the toy with lambda = 0 (base 0, lambda_min 0: the paper's A-Softmax "
    "target psi(theta) itself; the toy's margin warm-up blends it in from cos theta over the first "
    "100 steps, as the usual lambda annealing does over ~1,700): with the usual annealing lambda "
    "is still 10 after the toy's 800 steps, the target (lambda cos + psi) / (1 + lambda) is met by "
    "clusters as wide as softmax's, and once it is met the loss goes to 0 by growing the feature "
    "norm (SphereFace's scale), so nothing pulls the clusters tighter (measured, seeds 0 / 1 / 2: "
    "2-D spread 7.0 / 6.4 / 6.7 deg against softmax's 7.5 / 6.8 / 7.7; 3-D 14.7 / 15.6 / 16.5 "
    "against 14.7 / 14.6 / 16.5, seed 2's smallest gap 40.6 deg against softmax's 52.2). With "
    "lambda = 0: 2-D 3.5 / 3.1 / 2.7 deg, 3-D 5.2 / 5.7 / 6.8 deg."
)


#: the fields of :class:`DemoConfig` that are :class:`~marginface.training.TrainConfig`'s
TRAIN_FIELDS = (
    "backbone", "embedding_size", "image_size", "epochs", "batch_size", "optimizer", "lr",
    "momentum", "weight_decay", "scheduler", "warmup_epochs",
)  # fmt: skip


@dataclass
class DemoConfig:
    """What ``marginface demo`` runs.

    Data: ``train_identities`` x ``train_images`` synthetic identities (``difficulty``) for
    training; ``test_identities`` x ``test_images`` held-out identities starting at
    ``test_first`` (never seen in training) for verification, ``max_pairs`` genuine pairs and
    ``impostor_pairs`` impostor pairs (many, so that TAR at FAR = 1e-4 rests on many false
    accepts), ``bootstrap_replicates`` for the intervals of the verdicts; ``data`` /
    ``test_data`` replace the synthetic specs.

    Model and schedule (the same for every head): ``backbone``, ``embedding_size``,
    ``image_size``, ``epochs``, ``batch_size``, ``optimizer`` (adamw / sgd) with ``lr``,
    ``momentum`` (sgd), ``weight_decay``, ``scheduler`` after ``warmup_epochs``.

    Toy (2-D circle, 3-D sphere): ``toy_identities`` x ``toy_images``, ``toy_dims``; how it
    trains is :class:`marginface.demo.toy.ToySchedule`.

    Running: ``heads``, ``seeds`` (each head runs with seeds 0 .. seeds-1), ``output``,
    ``device``, ``workers`` (training runs side by side in forked processes; 0 = auto: one
    per core, at most the number of runs: small convolutions gain little from a second thread,
    two runs on two cores gain almost 2x), ``threads`` (torch CPU threads per run; 0 = auto:
    the cores shared out over the workers), ``render_workers``, ``progress``, ``head_kwargs``
    (per-head overrides).
    """

    heads: list[str] = field(default_factory=lambda: list(DEFAULT_HEADS))
    seeds: int = 1
    data: str | None = None
    test_data: str | None = None
    train_identities: int = 800
    train_images: int = 10
    test_identities: int = 1000
    test_images: int = 10
    test_first: int = 1_000_000
    difficulty: float = 0.7
    max_pairs: int = 20_000
    impostor_pairs: int = 500_000
    bootstrap_replicates: int = 1000
    backbone: str = "small_cnn"
    embedding_size: int = 128
    image_size: int = 32
    epochs: int = 16
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0
    toy_identities: int = 6
    toy_images: int = 32
    toy_dims: list[int] = field(default_factory=lambda: [2, 3])
    angle_samples: int = 2000
    head_kwargs: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in HEAD_OVERRIDES.items()}
    )
    toy_head_kwargs: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in TOY_OVERRIDES.items()}
    )
    output: str = "demo_output"
    device: str = "cpu"
    threads: int = 0
    workers: int = 0
    render_workers: int = 2
    progress: bool = True
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.heads:
            raise ValueError("demo: at least one head is needed (--heads)")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError(f"demo: a head is listed twice in {','.join(self.heads)}")
        if self.seeds < 1:
            raise ValueError(f"demo: --seeds must be >= 1, got {self.seeds}")
        if self.threads < 0:
            raise ValueError(f"demo: --threads must be >= 0 (0 = auto), got {self.threads}")
        if not is_int_at_least(self.workers, 0):
            raise ValueError(f"demo: --workers must be an int >= 0 (0 = auto), got {self.workers}")
        for dim in self.toy_dims:
            if dim not in (2, 3):
                raise ValueError(f"demo: toy dimensions must be 2 or 3, got {dim}")
        try:  # the training settings are TrainConfig's, checked by it
            self.train_config()
        except ValueError as exc:
            raise ValueError(f"demo: {exc}") from None

    def train_config(self, **run: Any):
        """The :class:`~marginface.training.TrainConfig` of one training run: the settings
        every head shares (:data:`TRAIN_FIELDS`, ``device``, the training data) and ``run``
        (``head``, ``seed``, ``output``, ...)."""
        from marginface.training.config import TrainConfig

        shared = {k: getattr(self, k) for k in TRAIN_FIELDS}
        return TrainConfig(**{**shared, "data": self.train_spec, "device": self.device, **run})

    @property
    def train_spec(self) -> str:
        """The training set's dataset spec."""
        if self.data:
            return self.data
        spec = f"synthetic:{self.train_identities}x{self.train_images}"
        return spec + (f",difficulty={self.difficulty:g}" if self.difficulty != 1.0 else "")

    @property
    def test_spec(self) -> str:
        """The held-out identities' dataset spec (pairs are generated from it)."""
        if self.test_data:
            return self.test_data
        spec = f"synthetic:{self.test_identities}x{self.test_images},first={self.test_first}"
        return spec + (f",difficulty={self.difficulty:g}" if self.difficulty != 1.0 else "")

    @property
    def toy_spec(self) -> str:
        """The toy's few identities."""
        spec = f"synthetic:{self.toy_identities}x{self.toy_images}"
        return spec + (f",difficulty={self.difficulty:g}" if self.difficulty != 1.0 else "")

    def parallel_workers(self, runs: int) -> int:
        """Training runs side by side in worker processes (``workers``, or auto: one per core,
        at most ``runs``)."""
        import os

        if self.workers:
            return self.workers
        return max(1, min(runs, os.cpu_count() or 1))

    def torch_threads(self, runs: int = 1) -> int:
        """torch CPU threads per run (``threads``, or auto: the cores shared out over the
        runs going on side by side, at least 1)."""
        import os

        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.parallel_workers(runs))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for metrics.json)."""
        return dataclasses.asdict(self)


#: ``--quick``: a small run for CI's smoke test (every part of the report, in well under 90 s)
QUICK: dict[str, Any] = {
    "train_identities": 60,
    "train_images": 8,
    "test_identities": 50,
    "test_images": 8,
    "max_pairs": 1000,
    "impostor_pairs": 5000,
    "bootstrap_replicates": 200,
    "image_size": 24,
    "embedding_size": 32,
    "epochs": 3,
    "batch_size": 32,
    "warmup_epochs": 0.0,
    "toy_identities": 6,
    "toy_images": 12,
    "angle_samples": 320,
    "quick": True,
}


def make_config(quick: bool = False, **overrides: Any) -> DemoConfig:
    """The default configuration, or the ``--quick`` one, with ``overrides`` (None = keep)."""
    values: dict[str, Any] = dict(QUICK) if quick else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DemoConfig(**values)
