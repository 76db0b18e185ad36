"""The time left of a run, its validations included, for the progress bar.

tqdm's own estimate divides the steps left by the recent step rate, so a validation (minutes
on a CPU, done between two steps) first stalls it and then is missing from it. Here the time
left is the steps left at the recent step time plus the validations left at the time the last
ones took (before the first: their images at
:data:`marginface.training.validation.EMBED_COST` of a training image each).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from marginface.training.validation import EMBED_COST


def validations_left(step: int, end: int, epoch: int, epochs: int, val_every: int) -> int:
    """Validations still to come from optimizer step ``step`` (done) to ``end``: every
    ``val_every`` steps and at the end, or (``val_every`` 0) at each epoch end from the
    current ``epoch`` on."""
    if not val_every:
        return max(0, epochs - epoch)
    return end // val_every - step // val_every + (1 if end % val_every else 0)


class Eta:
    """Step and validation times of this session; :meth:`left` the seconds left."""

    def __init__(self, window: int = 50) -> None:
        self.steps: deque[float] = deque(maxlen=window)
        self.validations: deque[float] = deque(maxlen=5)

    def step(self, seconds: float) -> None:
        self.steps.append(seconds)

    def validation(self, seconds: float) -> None:
        self.validations.append(seconds)

    def left(self, steps: int, validations: int, val_images: int, images_per_step: int) -> float:
        """Seconds left: ``steps`` optimizer steps and ``validations`` of ``val_images``
        images each (None until a step was timed)."""
        if not self.steps:
            return float("nan")
        step_s = sorted(self.steps)[len(self.steps) // 2]  # median: robust to a slow step
        if self.validations:
            val_s = sum(self.validations) / len(self.validations)
        else:
            val_s = val_images * EMBED_COST * step_s / max(1, images_per_step)
        return steps * step_s + validations * val_s


def run_left(
    eta: Eta, cfg: Any, total_steps: int, validator: Any, position: dict[str, int]
) -> float:
    """Seconds left of a run of ``cfg`` (``total_steps`` in all, up to ``max_steps``) at
    ``position``, the validations of ``validator`` (None or empty: none) included."""
    end = min(total_steps, cfg.max_steps or total_steps)
    step = position["step"]
    validations = 0
    if validator:
        validations = validations_left(step, end, position["epoch"], cfg.epochs, cfg.val_every)
    images = validator.images_per_run() if validator else 0
    return eta.left(end - step, validations, images, cfg.batch_size * cfg.accumulate)


def clock(seconds: float) -> str:
    """``H:MM:SS`` (or ``MM:SS``), ``?`` when unknown."""
    if seconds != seconds:  # NaN
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"
