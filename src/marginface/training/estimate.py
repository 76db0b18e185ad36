"""How long a run will take on a CPU, said before its first step, with a setting that fits.

A CPU trains ``iresnet50`` at 112 px (``marginface train``'s defaults) at seconds per image:
20 epochs of a few thousand images take hours. Before the first step, :func:`cpu_estimate`
times one forward and backward pass of the run's backbone on a few random images (a fresh copy
of the architecture, with the random number generators forked, so the run itself is not
touched), scales it to the images the run will train on and to its validations, and, when the
total is above :data:`SLOW_S`, times the settings of :data:`CPU_SETTINGS` the same way and
suggests the first that fits (else the fastest). One line; the run goes on (Ctrl-C stops it and
keeps the last completed step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

#: runs estimated above this many seconds get the line
SLOW_S = 30 * 60
#: images timed per probe (after one image of warm-up)
PROBE_IMAGES = 4
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
        for n in (2, images):  # a warm-up pass (BatchNorm needs 2), then the timed one
            x = torch.randn(n, 3, image_size, image_size, generator=gen)
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
            f"on this CPU the run will take about {_duration(self.seconds)} ({backbone} at "
            f"{image_size} px: {self.per_image_s:.3g} s per training image, timed now)"
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
    train_images: int,
    val_images: int,
) -> Estimate:
    """The estimate of the rest of the run and, when above :data:`SLOW_S`, a setting that
    fits (module doc)."""
    per = seconds_per_image(backbone, image_size, embedding_size, backbone_kwargs)
    estimate = Estimate(run_seconds(per, train_images, val_images), per)
    if estimate.seconds <= SLOW_S:
        return estimate
    options = []
    for name, size in CPU_SETTINGS:
        if (name, size) == (backbone, image_size):
            continue
        other = seconds_per_image(name, size, embedding_size)
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
