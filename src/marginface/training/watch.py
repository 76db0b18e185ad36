"""A watch on a run's loss that says when the run is not learning.

:class:`LossWatch` compares the loss, after a set share of the run, with the loss of a model that
tells no class apart (:func:`marginface.heads.scale.chance_loss`): a run still at that plateau has
learnt nothing that separates the classes, most often because the scale is too high for the
number of classes. How the run's scale was set is :mod:`marginface.heads.scale`'s.
"""

from __future__ import annotations

import math
from collections import deque

from marginface.heads import MarginHead
from marginface.heads.scale import ScaleChoice, auto_scale, chance_loss, resolve_scale

#: the scale policy (:mod:`marginface.heads.scale`) is imported from here too
__all__ = ["STALLED_ABOVE", "LossWatch", "ScaleChoice", "resolve_scale"]

#: a run is stalled when, at the check, its loss is above this multiple of the chance-level loss.
#: Measured (docs/training.md, ArcFace on 100 synthetic identities, 300 steps): halfway through,
#: runs that went on to learn were at 0.34-0.94x of it (softmax, s = 6.5 ... 14.4), runs that
#: never learnt (s = 32, 64) at 1.42-2.1x; the issue's stalled s = 64 run on 299 real people
#: ended at 1.54x.
STALLED_ABOVE = 1.15


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
        self.scale = float(head.s) if head.scale_policy == "auto" else None
        self.suggested = auto_scale(head, num_classes) if self.scale is not None else None
        # the plain softmax and the cosine heads; not SphereFace (its scale is the feature
        # norm) nor the binary heads (their loss is not a softmax cross-entropy)
        watched = head.scale_policy in ("auto", "none")
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
