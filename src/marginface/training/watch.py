"""The scale of a run's head, and a watch on its loss that says when the run is not learning.

:func:`resolve_scale` fills ``s = "auto"`` (the default of ``marginface train`` for every cosine
head) from :func:`marginface.heads.scale.auto_scale`. :class:`LossWatch` compares the loss, after a
set share of the run, with the loss of a model that tells no class apart
(:func:`marginface.heads.scale.chance_loss`): a run still at that plateau has learnt nothing that
separates the classes, most often because the scale is too high for the number of classes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from marginface.heads import MarginHead, create_head
from marginface.heads.scale import SCALE_RULE, auto_scale, chance_loss, uses_scale

#: a run is stalled when, at the check, its loss is above this multiple of the chance-level loss.
#: Measured (docs/training.md, ArcFace on 100 synthetic identities, 300 steps): halfway through,
#: runs that went on to learn were at 0.34-0.94x of it (softmax, s = 6.5 ... 14.4), runs that
#: never learnt (s = 32, 64) at 1.42-2.1x; the issue's stalled s = 64 run on 299 real people
#: ended at 1.54x.
STALLED_ABOVE = 1.15


@dataclass
class ScaleChoice:
    """How a run's scale was set: ``value``, ``rule`` (None when given explicitly)."""

    head: str
    num_classes: int
    value: float | None
    rule: str | None

    def describe(self) -> str:
        if self.value is None:
            return f"head {self.head}: sets its own scale (s=auto applies to the cosine heads)"
        if self.rule is None:
            return f"head {self.head}: s={self.value:g} (given)"
        return (
            f"head {self.head}: s=auto -> {self.value:.2f} for {self.num_classes} classes "
            f"({self.rule})"
        )


def resolve_scale(
    head: str, embedding_size: int, num_classes: int, head_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], ScaleChoice]:
    """``head_kwargs`` with ``s`` set: a missing or ``"auto"`` s of a cosine head becomes
    :func:`auto_scale`'s value (computed with the head's other hyperparameters)."""
    kwargs = dict(head_kwargs)
    s = kwargs.get("s", "auto")
    probe_kwargs = {k: v for k, v in kwargs.items() if k != "s"}
    with torch.random.fork_rng(devices=[]):  # the probe's init must not move the run's RNG
        probe = create_head(head, 1, max(3, num_classes), **probe_kwargs)
    if not uses_scale(probe):
        if s == "auto" and "s" in kwargs:
            raise ValueError(
                f"head_kwargs s: 'auto' applies to the cosine softmax heads; head {head!r} "
                f"sets its scale otherwise (give a number)"
            )
        return kwargs, ScaleChoice(head, num_classes, None, None)
    if s == "auto":
        kwargs["s"] = round(auto_scale(probe, num_classes), 4)
        return kwargs, ScaleChoice(head, num_classes, kwargs["s"], SCALE_RULE)
    number = isinstance(s, int | float) and not isinstance(s, bool)
    # anything else is create_head's to refuse, naming the head and the key
    return kwargs, ScaleChoice(head, num_classes, float(s) if number else None, None)


class LossWatch:
    """Watches the training loss against :func:`chance_loss`; one warning when it stalls
    (the mean of the last steps above :data:`STALLED_ABOVE` times it at the check).

    Args:
        head: the run's margin head (full class count ``num_classes``).
        num_classes: C.
        total_steps: the run's optimizer steps.
        share: the share of the run after which the loss is checked (0 = never).
    """

    def __init__(self, head: MarginHead, num_classes: int, total_steps: int, share: float):
        self.num_classes = num_classes
        self.head_name = head.head_name
        self.scale = float(head.s) if uses_scale(head) else None
        self.suggested = auto_scale(head, num_classes) if self.scale is not None else None
        # the plain softmax and the cosine heads; not SphereFace (its scale is the feature
        # norm) nor the binary heads (their loss is not a softmax cross-entropy)
        plain = not head.normalize and type(head).forward is MarginHead.forward
        watched = plain or self.scale is not None
        self.chance = chance_loss(head, num_classes) if watched else None
        self.check_step = max(1, math.ceil(share * total_steps)) if share > 0 else None
        self.enabled = share > 0
        self.recent: deque[float] = deque(maxlen=max(5, (self.check_step or 0) // 10))
        self.first: float | None = None
        self.last_step = 0
        self.warning: str | None = None

    def update(self, step: int, loss: float) -> str | None:
        """Feed one step's loss; returns the warning the first time the check fails."""
        if self.first is None:
            self.first = loss
        self.recent.append(loss)
        self.last_step = step
        if self.chance is None or self.check_step is None or self.warning is not None:
            return None
        if step < self.check_step:
            return None
        level = sum(self.recent) / len(self.recent)
        if level <= STALLED_ABOVE * self.chance:
            self.check_step = None  # passed: nothing more to watch
            return None
        self.warning = self._message(step, level)
        return self.warning

    def final_message(self) -> str | None:
        """The warning on the final numbers (the mean of the last steps fed, at the last step)
        when the loss is still on the plateau at the end, else None (also when the watch is
        off); whether or not the check warned halfway (a resumed run feeds the steps before
        its interruption first, so this judges the whole run)."""
        if self.chance is None or not self.enabled or not self.recent:
            return None
        level = sum(self.recent) / len(self.recent)
        if level <= STALLED_ABOVE * self.chance:
            return None
        return self._message(self.last_step, level)

    def _message(self, step: int, level: float) -> str:
        c = self.num_classes
        where = f"the loss is {level:.2f} after {step} steps (it started at {self.first:.2f})"
        plateau = (
            f"still above {self.chance:.2f}, the loss of a model that tells no class "
            f"apart ({self.head_name}"
            + (f", s={self.scale:g}" if self.scale is not None else "")
            + f", {c} classes)"
        )
        if self.scale is not None and self.suggested is not None:
            if self.scale > 1.5 * self.suggested:
                hint = (
                    f"the scale s={self.scale:g} is high for {c} classes; try s=auto "
                    f"(s={self.suggested:.1f}): --head-s auto"
                )
            else:
                hint = "try a lower --lr, --warmup-epochs or a longer --margin-warmup-epochs"
        else:
            hint = "try a lower --lr or --warmup-epochs"
        return f"{where}: {plateau}: {hint}"
