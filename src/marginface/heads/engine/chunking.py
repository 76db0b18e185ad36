"""The chunk size of every per-class loop, and chunked per-row reductions over classes for heads
whose loss the fused softmax can't express.

:func:`auto_chunk_size` sizes the chunks of both. :func:`marginface.heads.engine.chunked_logsumexp`
covers every head whose logits are ``r_i * g(z_ij)`` with a margin on the target only.  A few
later heads need more: a
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

#: Default size of the per-chunk working set in bytes, on CPU and on CUDA devices.  Measured
#: at B = D = 512, C = 100,000, ArcFace forward + backward: on 2 CPU cores 24 MiB is as fast as
#: any larger size; on an H200, 24 / 64 / 128 / 512 MiB took 29.7 / 18.3 / 14.5 / 12.3 ms with
#: peak growth 216 / 244 / 286 / 542 MiB (the plain dense loss: 5.7 ms, 982 MiB).
DEFAULT_CHUNK_BYTES = 24 * 2**20
DEFAULT_CHUNK_BYTES_CUDA = 128 * 2**20
#: Temporaries of shape (B, chunk) alive at once in the backward pass.
_TEMPS = 3


def auto_chunk_size(
    batch_size: int,
    num_classes: int,
    memory_budget: int | None = None,
    subcenters: int = 1,
    device_type: str = "cpu",
) -> int:
    """Number of classes per chunk for ``batch_size`` rows.

    Args:
        memory_budget: bytes the (B, chunk) temporaries may take; the default, 24 MiB on CPU
            (4096 classes per chunk at B = 512: the matrix products dominate, small beside
            the weight) and 128 MiB on CUDA (fewer, larger kernels).
    """
    default = DEFAULT_CHUNK_BYTES_CUDA if device_type == "cuda" else DEFAULT_CHUNK_BYTES
    budget = default if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ValueError(f"memory_budget must be positive, got {memory_budget}")
    per_class = max(1, batch_size) * 4 * _TEMPS * subcenters
    chunk = max(64, budget // per_class)
    return int(min(num_classes, chunk)) if num_classes > 0 else 1


#: Default bytes of a block's temporaries in :func:`chunk_reduce` on CUDA devices (CPU:
#: DEFAULT_CHUNK_BYTES).
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
            (see :func:`auto_chunk_size`; default 24 MiB on CPU,
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
