"""Chunked per-row reductions over classes for heads whose loss the fused softmax can't express.

:func:`marginface.heads.fused.chunked_logsumexp` covers every head whose logits are
``r_i * g(z_ij)`` with a margin on the target only.  A few later heads need more: a
different map of the non-target cosines (SphereFace-R v2) or a sum of per-class binary
losses instead of a softmax (SphereFace2, UniFace).  :func:`chunk_reduce` evaluates such a
per-row function one block of classes at a time under activation checkpointing, so that
at most one (B, chunk) block of cosines and its temporaries is alive, in the forward and in
the backward pass; the results are exact (plain autograd inside each block).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from marginface.heads._math import EPS
from marginface.heads.fused import auto_chunk_size

#: Default bytes of a block's temporaries on CUDA devices (CPU: fused.DEFAULT_CHUNK_BYTES).
GPU_CHUNK_BYTES = 64 * 2**20

#: fn(cos (B, c1 - c0), c0, c1) -> (B,): a per-row reduction over one block of classes
BlockFn = Callable[[Tensor, int, int], Tensor]


def _block(fn: BlockFn, xn: Tensor, weight: Tensor, c0: int, c1: int) -> Tensor:
    w = F.normalize(weight[c0:c1], dim=1, eps=EPS)
    return fn(xn @ w.t(), c0, c1)


def chunk_reduce(
    fn: BlockFn,
    xn: Tensor,
    weight: Tensor,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """Apply ``fn`` to the cosines of each block of classes; returns (B, number of blocks).

    Args:
        fn: ``fn(cos, c0, c1) -> (B,)`` with ``cos`` the (B, c1 - c0) cosines between the
            rows of ``xn`` and the normalised class centres ``c0 .. c1 - 1``.
        xn: (B, D) L2-normalised embeddings.
        weight: (C, D) class centres (normalised per row inside each block).
        chunk_size / memory_budget: classes per block, or the bytes its temporaries may use
            (see :func:`marginface.heads.fused.auto_chunk_size`; default 4 MiB on CPU,
            ``GPU_CHUNK_BYTES`` = 64 MiB on CUDA).

    The caller reduces the (B, blocks) result: a sum for per-class losses, a logsumexp for a
    softmax.  Each block runs under :func:`torch.utils.checkpoint.checkpoint`, so its
    backward recomputes the block instead of keeping it.
    """
    num_classes = weight.shape[0]
    if chunk_size is None and memory_budget is None and xn.is_cuda:
        # a GPU runs a cache-sized block in microseconds: launch overhead would dominate
        memory_budget = GPU_CHUNK_BYTES
    chunk = chunk_size or auto_chunk_size(xn.shape[0], num_classes, memory_budget)
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    need_grad = torch.is_grad_enabled()
    outs = []
    for c0 in range(0, num_classes, chunk):
        c1 = min(num_classes, c0 + chunk)
        if need_grad:
            outs.append(checkpoint(_block, fn, xn, weight, c0, c1, use_reentrant=False))
        else:
            outs.append(_block(fn, xn, weight, c0, c1))
    return torch.stack(outs, dim=1)


def masked_fill_target(logits: Tensor, labels: Tensor, c0: int, value: float) -> Tensor:
    """``logits`` (B, k) of classes c0 .. c0+k-1 with each row's target cell set to ``value``."""
    cols = torch.arange(c0, c0 + logits.shape[1], device=logits.device)
    return logits.masked_fill(labels[:, None] == cols[None, :], value)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), exact at every x (``F.softplus`` returns x itself above 20, an error
    of up to 2e-9 in value and gradient), stable for large |x|; gradient sigmoid(x)."""
    return torch.logaddexp(x, x.new_zeros(()))
