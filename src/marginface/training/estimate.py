"""How long a run will take on a CPU, said after its first step, with a setting that fits.

A CPU trains ``iresnet50`` at 112 px (``marginface train``'s defaults) at seconds per image:
20 epochs of a few thousand images take hours. After the first step of a run (or of a resumed
run), :func:`cpu_estimate` scales that step's time to the images the run has left to train on
and to its validations; when the total is above :data:`SLOW_S` it times the run's backbone and
those of :data:`CPU_SETTINGS` on a few random images (fresh copies of the architectures, with
the random number generators forked, so the run itself is not touched) and suggests the first
that fits (else the fastest), its time scaled from the first step by the ratio of the two
probes: a few images cost more per image than a full batch, alike for every backbone. One
line; the run goes on (Ctrl-C stops it and keeps the last completed step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

#: runs estimated above this many seconds get the line
SLOW_S = 30 * 60
#: images timed per probe (after a warm-up pass on them)
PROBE_IMAGES = 8
#: settings suggested for a CPU, fastest-fitting first: (backbone, image size)
CPU_SETTINGS = (("mobilefacenet", 112), ("small_cnn", 64))
#: an image embedded for validation costs about this share of a training image (forward only)
FORWARD_SHARE = 1 / 3


def seconds_per_image(
    backbone: str,
    image_size: int,
    embedding_size: int,
    backbone_kwargs: dict[str, Any] | None = None,
    images: int = PROBE_IMAGES,
) -> float:
    """Seconds of one forward and backward pass per image of ``backbone`` at ``image_size``
    on the CPU (this process's torch threads), from a fresh model on random images."""
    from marginface.backbones import create_backbone

    kwargs = {k: v for k, v in (backbone_kwargs or {}).items() if k != "embedding_size"}
    kwargs["input_size"] = image_size
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        net = create_backbone(backbone, embedding_size=embedding_size, **kwargs).train()
        params = [p for p in net.parameters() if p.requires_grad]
        x = torch.randn(images, 3, image_size, image_size, generator=gen)
        for _ in range(2):  # a warm-up pass (the kernels for this shape are made), then timed
            t0 = time.perf_counter()
            torch.autograd.grad(net(x).square().sum(), params)
            seconds = time.perf_counter() - t0
    return seconds / images


@dataclass
class Estimate:
    """``seconds``: the rest of the run; ``suggestion``: the CPU setting proposed (flags) and
    its ``suggested_seconds`` (None when the run is not slow)."""

    seconds: float
    per_image_s: float
    suggestion: str | None = None
    suggested_seconds: float | None = None

    def line(self, backbone: str, image_size: int) -> str:
        text = (
            f"on this CPU the rest of the run will take about {_duration(self.seconds)} "
            f"({backbone} at "
            f"{image_size} px: {self.per_image_s:.3g} s per training image in the first step)"
        )
        if self.suggestion is not None:
            text += (
                f"; for a CPU try {self.suggestion} (about "
                f"{_duration(self.suggested_seconds or 0)}); Ctrl-C stops and keeps the last step"
            )
        return text


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def run_seconds(per_image_s: float, train_images: int, val_images: int) -> float:
    """The rest of a run: ``train_images`` trained on, ``val_images`` embedded for validation
    (all validations together)."""
    return per_image_s * (train_images + FORWARD_SHARE * val_images)


def cpu_estimate(
    backbone: str,
    image_size: int,
    embedding_size: int,
    backbone_kwargs: dict[str, Any],
    step_seconds: float,
    images_per_step: int,
    train_images: int,
    val_images: int,
) -> Estimate:
    """The estimate of the rest of the run from its first step (``step_seconds`` for
    ``images_per_step`` images) and, when above :data:`SLOW_S`, a setting that fits (module
    doc)."""
    per = step_seconds / images_per_step
    estimate = Estimate(run_seconds(per, train_images, val_images), per)
    if estimate.seconds <= SLOW_S:
        return estimate
    mine = seconds_per_image(backbone, image_size, embedding_size, backbone_kwargs)
    options = []
    for name, size in CPU_SETTINGS:
        if (name, size) == (backbone, image_size):
            continue
        other = per * seconds_per_image(name, size, embedding_size) / mine
        options.append((run_seconds(other, train_images, val_images), name, size))
        if options[-1][0] <= SLOW_S:
            break
    if options:
        fits = [o for o in options if o[0] <= SLOW_S]
        seconds, name, size = fits[0] if fits else min(options)
        if seconds < estimate.seconds:
            estimate.suggestion = f"--backbone {name} --image-size {size}"
            estimate.suggested_seconds = seconds
    return estimate


def rest_of_run(
    cfg: Any,
    total_steps: int,
    val_images_per_run: int,
    position: dict[str, int],
    step_seconds: float,
) -> Estimate:
    """:func:`cpu_estimate` of a run of ``cfg`` (``total_steps`` in all) after its first step
    from ``position`` took ``step_seconds``: the steps left up to ``max_steps`` and their
    validations (each of ``val_images_per_run`` images)."""
    end = min(total_steps, cfg.max_steps or total_steps)
    steps = max(0, end - position["step"])
    val_runs = (steps // cfg.val_every if cfg.val_every else cfg.epochs - position["epoch"]) * bool(
        cfg.val
    )
    return cpu_estimate(
        cfg.backbone,
        cfg.image_size,
        cfg.embedding_size,
        cfg.backbone_kwargs,
        step_seconds=step_seconds,
        images_per_step=cfg.batch_size * cfg.accumulate,
        train_images=steps * cfg.batch_size * cfg.accumulate,
        val_images=val_runs * val_images_per_run,
    )
