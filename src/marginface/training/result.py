"""What :func:`marginface.training.train` returns: :class:`TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from marginface.training.verdict import Verdict


@dataclass
class TrainResult:
    """What :func:`marginface.training.train` returns.

    ``head``: the trained margin head, or with Partial FC the PartialFC module (this process's
    shard and its state). ``history``: one dict per optimizer step (step, epoch, loss, lr,
    images_per_s, ...), of the whole run (a resumed run includes the steps logged before the
    interruption).
    ``stopped``: ``finished``, ``max_steps`` or ``interrupted``. ``best``: the best validation
    (step, score, threshold) or None. ``validation``: the last validation metrics per set.
    ``scale``: how the head's scale was set (:class:`marginface.heads.scale.ScaleChoice`).
    ``warnings``: what the loss watch reported. ``summary``: at the end (None when off or
    interrupted) ``nearer_own_share``, the share of ``images`` training images (up to
    ``summary_images``) nearer their own class centre than any other. ``verdict``: the
    one-line verdict on the final numbers of the whole run
    (:class:`marginface.training.verdict.Verdict`: ``trained``, ``line``).
    """

    output_dir: Path
    history: list[dict[str, Any]]
    train_time_s: float
    backbone: nn.Module
    head: nn.Module
    stopped: str = "finished"
    steps: int = 0
    best: dict[str, Any] | None = None
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: Any = None
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    verdict: Verdict | None = None
