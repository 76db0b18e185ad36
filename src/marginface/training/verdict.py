"""The one-line verdict at the end of a training run: ``trained`` or ``NOT trained: why; try``.

One rule, used by ``marginface train`` (:class:`marginface.training.TrainResult` ``verdict``,
the ``verdict`` event of ``log.jsonl``) and by the demo's report: a run is trained when at least
:data:`CONVERGED_SHARE` of its training images are nearer their own class centre than any
other (the end-of-run summary) and its final loss is off the no-learning plateau
(:class:`marginface.training.watch.LossWatch`). The numbers judged are the final ones of the
whole run, a resumed run included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: a run counts as trained when at least this share of its training images is nearer its own
#: class centre than any other
CONVERGED_SHARE = 0.95


def is_trained(nearer_own_share: float) -> bool:
    """The rule on the share of training images nearer their own class centre."""
    return nearer_own_share >= CONVERGED_SHARE


@dataclass(frozen=True)
class Verdict:
    """``trained``: True, False, or None when nothing was measured to judge by; ``line``: the
    one line said to the user (starts with ``trained`` or ``NOT trained``)."""

    trained: bool | None
    line: str

    def __str__(self) -> str:
        return self.line


def training_verdict(
    *,
    stopped: str,
    steps: int,
    total_steps: int,
    summary: dict[str, Any] | None,
    stalled: str | None,
    loss_first: float | None = None,
    loss_last: float | None = None,
) -> Verdict:
    """The verdict from a run's final numbers.

    Args:
        stopped: ``finished``, ``max_steps`` or ``interrupted``.
        steps, total_steps: optimizer steps done (the whole run) and planned.
        summary: the end-of-run summary (``nearer_own_share``, ``images``) or None.
        stalled: the loss watch's message on the final loss when it is still on the
            no-learning plateau (:meth:`LossWatch.final_message`), else None.
        loss_first, loss_last: the run's first and last loss (said when nothing else is).
    """
    if stopped == "interrupted":
        return Verdict(
            False,
            f"NOT trained: interrupted at step {steps} of {total_steps}; continue with --resume",
        )
    if stalled is not None:
        return Verdict(False, f"NOT trained: {stalled}")
    if summary is None:
        losses = (
            f"; the loss went from {loss_first:.4f} to {loss_last:.4f}"
            if loss_first is not None and loss_last is not None
            else ""
        )
        return Verdict(
            None,
            "no verdict: the share of training images nearer their own class centre was not "
            f"measured (--summary-images 0){losses}",
        )
    share, images = float(summary["nearer_own_share"]), int(summary["images"])
    measured = (
        f"{share:.1%} of {images} training images nearer their own class centre than any "
        f"other ({'>=' if is_trained(share) else 'below'} {CONVERGED_SHARE:.0%})"
    )
    if is_trained(share):
        return Verdict(True, f"trained: {measured}")
    if stopped == "max_steps" and steps < total_steps:
        hint = (
            f"it stopped at step {steps} of {total_steps} (--max-steps): continue with "
            "--resume and a larger --max-steps"
        )
    else:
        hint = (
            "try more --epochs (this run continues with --resume --epochs N), a higher --lr, "
            "or a smaller --backbone for few images"
        )
    return Verdict(False, f"NOT trained: {measured}; {hint}")


def run_verdict(
    stopped: str,
    steps: int,
    total_steps: int,
    summary: dict[str, Any] | None,
    stalled: str | None,
    history: list[dict[str, Any]],
    logger: Any,
) -> Verdict:
    """:func:`training_verdict` of a run whose step records are ``history`` (its first and
    last loss), logged as the ``verdict`` event of ``logger``."""
    losses = [r["loss"] for r in history]
    verdict = training_verdict(
        stopped=stopped,
        steps=steps,
        total_steps=total_steps,
        summary=summary,
        stalled=stalled,
        loss_first=losses[0] if losses else None,
        loss_last=losses[-1] if losses else None,
    )
    logger.event("verdict", steps, trained=verdict.trained, line=verdict.line)
    return verdict
