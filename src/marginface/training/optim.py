"""Optimizers and the learning-rate schedule (warm-up, then cosine or polynomial decay).

The schedule is a pure function of the optimizer step, so resuming only needs the step count.
:func:`optimizer_step` is one step of a run's optimizer, its gradients accumulated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def build_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict],
    name: str,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay, as InsightFace) or AdamW over the trainable ``params``.

    ``params``: parameters, or parameter groups (dicts with ``params`` and optionally their own
    ``lr``, e.g. a backbone fine-tuned slower than its head); parameters that need no gradient
    are left out, and so is a group left empty. The schedule scales every group's rate alike.
    """
    items = list(params)
    if items and isinstance(items[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in items]
        chosen: list = [g for g in groups if g["params"]]
    else:
        chosen = [p for p in items if p.requires_grad]
    if not chosen:
        raise ValueError("no trainable parameters to optimise")
    if name == "sgd":
        return torch.optim.SGD(chosen, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(chosen, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: sgd, adamw")


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    kind: str = "poly",
    power: float = 2.0,
    min_ratio: float = 0.0,
) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Linear warm-up from ``1 / (warmup_steps + 1)`` to 1 over ``warmup_steps`` steps, then
    ``kind``: ``cosine`` (half cosine to ``min_ratio``), ``poly`` ((1 - t) ** power to
    ``min_ratio``, InsightFace's PolyScheduler with power 2) or ``constant``; t runs from 0 at
    the end of the warm-up to 1 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return 1.0
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * t))
    elif kind == "poly":
        decay = (1.0 - t) ** power
    else:
        raise ValueError(f"unknown scheduler {kind!r}; valid: cosine, poly, constant")
    return min_ratio + (1.0 - min_ratio) * decay


class WarmupDecay:
    """Per-iteration schedule: sets every param group's ``lr`` to ``base_lr * lr_factor(step)``.

    Call :meth:`step` after each ``optimizer.step()``. ``state_dict`` holds the step count only.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        kind: str = "poly",
        power: float = 2.0,
        min_lr: float = 0.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.optimizer = optimizer
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.kind, self.power = kind, float(power)
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, base in zip(optimizer.param_groups, self.base_lrs, strict=True):
            g["initial_lr"] = base
        self.min_ratio = min(1.0, min_lr / self.base_lrs[0]) if self.base_lrs[0] > 0 else 0.0
        self.last_step = 0
        lr_factor(0, self.total_steps, self.warmup_steps, kind, power)  # check ``kind`` now
        self._apply()

    def factor(self, step: int) -> float:
        return lr_factor(
            step, self.total_steps, self.warmup_steps, self.kind, self.power, self.min_ratio
        )

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * f

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, int]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()


def optimizer_step(run: Any, grad_clip: float | None) -> dict[str, Any]:
    """One step of ``run``'s optimizer on the gradients its grad scaler accumulated (clipped to
    the norm ``grad_clip``, unless None), then of its schedule; the gradients dropped. Returns
    what the step's record gets from it: ``grad_norm`` when clipped."""
    record: dict[str, Any] = {}
    if grad_clip is not None:
        run.scaler.unscale_(run.optimizer)
        norm = nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
        record["grad_norm"] = float(norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    return record
