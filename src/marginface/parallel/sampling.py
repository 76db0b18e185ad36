"""Partial FC's class sampling and the optimizer plumbing that leaves unsampled centres alone.

Design (InsightFace's Partial FC v1, "activated subset"): the shard's full centres stay in
``head.weight`` with ``requires_grad=False``, so no optimizer ever sees a gradient for them.
Each training step copies the sampled rows into a small Parameter (:class:`ActiveRows`), the
loss is computed on it, and optimizer step hooks

* before the step, gather the sampled rows of the row-shaped optimizer state (SGD's
  ``momentum_buffer``, Adam's ``exp_avg`` / ``exp_avg_sq``) into the small parameter's state,
* after the step, scatter the updated rows and their state back (``index_copy_``).

Rows that were not sampled are therefore bit-identical after a step: weight, momentum, and
weight decay (which applies to sampled rows only).  The full-size row state lives in the
module (``PartialFC.state_dict()``), so it is sharded, saved and re-sharded with the centres.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def num_samples(sample_rate: float, shard_size: int) -> int:
    """Centres kept per step on a shard of ``shard_size`` classes: ceil(rate * size)."""
    return min(shard_size, math.ceil(sample_rate * shard_size))


def sample_classes(
    positive: Tensor, shard_size: int, num_sample: int, generator: torch.Generator
) -> Tensor:
    """Sorted local class ids to keep: every positive, then a uniform sample of the others.

    Args:
        positive: (P,) sorted unique local ids of the classes present in the global batch.
        shard_size: number of classes of this shard.
        num_sample: total to keep; when P >= num_sample only the positives are kept.
        generator: CPU generator (its state is part of the module's state).

    Returns:
        (max(P, num_sample),) int64, sorted, on ``positive``'s device.
    """
    if positive.numel() >= num_sample:
        return positive
    score = torch.rand(shard_size, generator=generator)
    score[positive.cpu()] = 2.0  # positives first
    index = torch.topk(score, num_sample, sorted=False).indices
    return index.sort().values.to(positive.device)


def class_rows(index: Tensor, rows_per_class: int) -> Tensor:
    """Row numbers of classes ``index`` in a class-major (C * k, ...) tensor: (len * k,)."""
    if rows_per_class == 1:
        return index
    k = torch.arange(rows_per_class, device=index.device)
    return (index[:, None] * rows_per_class + k).reshape(-1)


class ActiveRows(nn.Module):
    """The Parameters of the sampled rows (weight, and bias for heads with one).

    Their data change every step; nothing of this module goes into ``state_dict``.
    """

    def __init__(self, width: int, has_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(0, width))
        self.bias = nn.Parameter(torch.empty(0)) if has_bias else None

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:  # noqa: D401
        """Nothing to save: the rows are copies of the shard's centres."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Nothing to load."""

    def named(self) -> list[tuple[str, nn.Parameter]]:
        """("weight", p) and ("bias", p) where present."""
        return [(n, p) for n, p in (("weight", self.weight), ("bias", self.bias)) if p is not None]


def gather_row_state(
    optimizer: torch.optim.Optimizer, param: Tensor, full_state: dict[str, Tensor], rows: Tensor
) -> None:
    """Before a step: put rows ``rows`` of each full row-shaped state into ``param``'s state."""
    state = optimizer.state[param]
    for key, value in list(state.items()):  # stale row-shaped entries of another size
        if (
            isinstance(value, Tensor)
            and key not in full_state
            and value.dim() == param.dim()
            and value.shape != param.shape
        ):
            del state[key]
    for key, full in full_state.items():
        state[key] = full.to(param.device).index_select(0, rows)


def scatter_row_state(
    optimizer: torch.optim.Optimizer,
    param: Tensor,
    full_state: dict[str, Tensor],
    rows: Tensor,
    full_rows: int,
) -> None:
    """After a step: copy ``param``'s row-shaped optimizer state into rows ``rows`` of the full
    state (created as zeros of ``full_rows`` rows the first time)."""
    for key, value in optimizer.state[param].items():
        if not (isinstance(value, Tensor) and value.shape == param.shape):
            continue
        full = full_state.get(key)
        if full is None or full.device != value.device:
            full = (
                value.new_zeros((full_rows, *value.shape[1:]))
                if full is None
                else full.to(value.device)
            )
            full_state[key] = full
        full.index_copy_(0, rows, value)
    for key in [k for k, v in optimizer.state[param].items() if k in full_state]:
        del optimizer.state[param][key]  # kept in full_state until the next gather
