"""The collectives of the sharded classifier, with the backward passes the loss needs.

All of them go through ``torch.distributed`` (gloo on CPU, NCCL on GPU).  A ``group`` of
``None`` in the functions below means "no process group: a single process", in which case
every collective is the identity; :func:`resolve_group` turns the user's ``process_group``
argument into that convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

#: ``process_group="local"``: one process, no torch.distributed (world size 1).
LOCAL = "local"


@dataclass(frozen=True)
class GroupInfo:
    """Where this process stands: its ``rank`` among ``world_size`` ranks of ``group``."""

    group: object | None  # a ProcessGroup, or None for a single process without one
    rank: int
    world_size: int


def resolve_group(process_group: object | None) -> GroupInfo:
    """The group to use: a ProcessGroup, ``None`` (the default group) or ``"local"``.

    ``None`` needs ``torch.distributed`` to be initialised (torchrun + init_process_group);
    otherwise a ValueError explains how to launch, or to pass ``process_group="local"``.
    """
    if process_group == LOCAL:
        return GroupInfo(None, 0, 1)
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "PartialFC needs an initialised torch.distributed process group: launch with "
            "`torchrun --nproc-per-node N script.py` and call "
            "torch.distributed.init_process_group('gloo' or 'nccl') before creating it, or "
            "pass process_group='local' to run a single process (world size 1)"
        )
    group = dist.group.WORLD if process_group is None else process_group
    return GroupInfo(group, dist.get_rank(group), dist.get_world_size(group))


def all_gather_plain(x: Tensor, group: object | None, world_size: int) -> Tensor:
    """Concatenation over ranks of equally shaped ``x`` (no gradient): (W * n, ...)."""
    if group is None:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts)


def all_reduce_(x: Tensor, group: object | None, op: object = None) -> Tensor:
    """In-place all-reduce (sum by default) of ``x``; returns ``x``."""
    if group is not None:
        dist.all_reduce(x, op=dist.ReduceOp.SUM if op is None else op, group=group)
    return x


class _AllGatherWithGrad(torch.autograd.Function):
    """(B, D) per rank -> (W * B, D) on every rank; backward: sum over ranks of own block."""

    @staticmethod
    def forward(ctx, x: Tensor, group: object, rank: int, world_size: int, scale: float):  # type: ignore[override]
        ctx.cfg = (group, rank, world_size, scale, x.shape[0])
        return all_gather_plain(x, group, world_size)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        group, rank, world_size, scale, b = ctx.cfg
        grad = grad.contiguous()
        if group is not None and dist.get_backend(group) == "nccl":
            out = grad.new_empty((b, *grad.shape[1:]))
            dist.reduce_scatter_tensor(out, grad, group=group)
        elif group is None:  # one process (embedding_grad_scale != 1)
            out = grad
        else:  # gloo has no reduce-scatter: sum everything, keep this rank's block
            out = all_reduce_(grad.clone(), group)[rank * b : (rank + 1) * b]
        if scale != 1.0:
            out = out * scale
        return out, None, None, None, None


def all_gather_with_grad(x: Tensor, info: GroupInfo, grad_scale: float = 1.0) -> Tensor:
    """All-gather ``x`` (B, ...) into (W * B, ...), rank-major, with a correct backward.

    The gradient of each rank's ``x`` is the sum over ranks of the gradient its block
    received there, times ``grad_scale`` (1 gives the exact gradient of the loss).
    """
    if info.group is None and grad_scale == 1.0:
        return x
    return _AllGatherWithGrad.apply(x, info.group, info.rank, info.world_size, float(grad_scale))


class _GlobalLogSumExp(torch.autograd.Function):
    """log sum_r exp(lse_r) over the ranks, (N,) from each rank's local (N,) lse.

    Forward: an all-reduce of the row max, then of the row sum of exp(lse_r - max).
    Backward: this rank's share only, d lse / d lse_r = exp(lse_r - lse): no communication,
    because each rank's local lse depends on its own shard of classes alone.
    """

    @staticmethod
    def forward(ctx, local: Tensor, group: object) -> Tensor:  # type: ignore[override]
        m = all_reduce_(local.detach().clone(), group, dist.ReduceOp.MAX)
        safe_m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        s = all_reduce_(torch.exp(local.detach() - safe_m), group)
        lse = safe_m + torch.log(s)
        ctx.save_for_backward(local, lse)
        return lse

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        local, lse = ctx.saved_tensors
        return grad * torch.exp(local - lse), None


def global_logsumexp(local: Tensor, info: GroupInfo) -> Tensor:
    """Combine each rank's log-sum-exp over its classes into the one over all classes."""
    if info.group is None:
        return local
    return _GlobalLogSumExp.apply(local, info.group)


class _AllReduceSumPartial(torch.autograd.Function):
    """Sum over ranks of per-rank partial sums; backward: the gradient, to every rank as is
    (each rank's partial sum enters the total with weight 1)."""

    @staticmethod
    def forward(ctx, local: Tensor, group: object) -> Tensor:  # type: ignore[override]
        return all_reduce_(local.detach().clone(), group)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad, None


def all_reduce_sum_partial(local: Tensor, info: GroupInfo) -> Tensor:
    """sum_r local_r on every rank, with the gradient of each rank's own ``local``."""
    if info.group is None:
        return local
    return _AllReduceSumPartial.apply(local, info.group)
