"""Chunked, fused margin-softmax: the log-sum-exp of a head's logits without the B x C matrix.

Every margin head of this package produces logits of one shape::

    l_ij = r_i * g_i(z_ij)      for j != y_i      (z: cosine, or x.W_j + b_j for plain softmax)
    l_iy = T_i                  (the target logit, computed by the head from z_iy)

with r_i a per-row scale (s, or the feature norm for SphereFace), g_i the identity or a
CurricularFace-style modulation of hard negatives, and T_i the margin-carrying target logit.
The loss is mean_i(lse_i - T_i) with lse_i = log sum_j exp(l_ij).

:func:`chunked_logsumexp` computes lse in chunks of classes with an online max / sum-exp, and
its backward recomputes each chunk's scores and forms the gradients chunk by chunk, so that at
no time more than a (B, chunk) block of scores exists.  The cost is one extra matrix product
(four instead of the three of forward + backward), against never holding B x C.

Rows whose label is -1 have no target column in this block of classes (used by the sharded
classifier of :mod:`marginface.parallel`); their ``target_logit`` entry is ignored.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_EPS = 1e-12  # as F.normalize

#: Default size of the per-chunk working set in bytes; small enough to stay in cache.
DEFAULT_CHUNK_BYTES = 4 * 2**20
#: Temporaries of shape (B, chunk) alive at once in the backward pass.
_TEMPS = 3


def auto_chunk_size(
    batch_size: int, num_classes: int, memory_budget: int | None = None, subcenters: int = 1
) -> int:
    """Number of classes per chunk for ``batch_size`` rows.

    Args:
        memory_budget: bytes the (B, chunk) temporaries may take; the default keeps them
            cache-sized (about 4 MiB), which is also the fastest choice on CPU.
    """
    budget = DEFAULT_CHUNK_BYTES if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ValueError(f"memory_budget must be positive, got {memory_budget}")
    per_class = max(1, batch_size) * 4 * _TEMPS * subcenters
    chunk = max(64, budget // per_class)
    return int(min(num_classes, chunk)) if num_classes > 0 else 1


def _scores(
    xn: Tensor,
    weight: Tensor,
    inv_norm: Tensor | None,
    bias: Tensor | None,
    c0: int,
    c1: int,
    subcenters: int,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Scores of classes [c0, c1): (B, k), the argmax sub-centre (or None) and the raw product."""
    k = subcenters
    w = weight[c0 * k : c1 * k]
    u = xn @ w.t()  # (B, (c1 - c0) * K)
    z = u * inv_norm[c0 * k : c1 * k] if inv_norm is not None else u.clone()
    if bias is not None:
        z += bias[c0:c1] if k == 1 else bias[c0 * k : c1 * k]
    if k == 1:
        return z, None, u
    z, arg = z.view(z.shape[0], c1 - c0, k).max(dim=2)
    return z, arg, u


def _modulate(
    z: Tensor, neg_threshold: Tensor | None, neg_t: float
) -> tuple[Tensor, Tensor | None]:
    """g(z) and the hard-negative mask (CurricularFace: z -> z (t + z) where z > threshold)."""
    if neg_threshold is None:
        return z, None
    mask = z > neg_threshold[:, None]
    return torch.where(mask, z * (neg_t + z), z), mask


def _target_cells(labels: Tensor, c0: int, c1: int) -> tuple[Tensor, Tensor]:
    rows = ((labels >= c0) & (labels < c1)).nonzero().squeeze(1)
    return rows, labels[rows] - c0


class _ChunkedLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        xn: Tensor,
        weight: Tensor,
        scale: Tensor,
        target_logit: Tensor,
        labels: Tensor,
        bias: Tensor | None,
        normalize: bool,
        neg_threshold: Tensor | None,
        neg_t: float,
        subcenters: int,
        chunk: int,
    ) -> Tensor:
        num_classes = weight.shape[0] // subcenters
        inv_norm = 1.0 / weight.norm(dim=1).clamp_min(_EPS) if normalize else None
        run_max = xn.new_full((xn.shape[0],), -math.inf)
        run_sum = xn.new_zeros(xn.shape[0])
        for c0 in range(0, num_classes, chunk):
            c1 = min(num_classes, c0 + chunk)
            z, _, _ = _scores(xn, weight, inv_norm, bias, c0, c1, subcenters)
            logits, _ = _modulate(z, neg_threshold, neg_t)
            logits = logits.mul_(scale[:, None]) if logits is z else logits * scale[:, None]
            rows, cols = _target_cells(labels, c0, c1)
            logits[rows, cols] = target_logit[rows]
            new_max = torch.maximum(run_max, logits.max(dim=1).values)
            run_sum = run_sum * torch.exp(run_max - new_max) + logits.sub_(
                new_max[:, None]
            ).exp_().sum(dim=1)
            run_max = new_max
        lse = run_max + torch.log(run_sum)
        ctx.save_for_backward(xn, weight, scale, labels, bias, inv_norm, neg_threshold, lse)
        ctx.target_logit = target_logit.detach()
        ctx.cfg = (normalize, neg_t, subcenters, chunk)
        return lse

    @staticmethod
    def backward(ctx, grad_lse: Tensor):  # type: ignore[override]
        xn, weight, scale, labels, bias, inv_norm, neg_threshold, lse = ctx.saved_tensors
        target_logit = ctx.target_logit
        normalize, neg_t, k, chunk = ctx.cfg
        need_x, need_w, need_r, need_t, _, need_b = ctx.needs_input_grad[:6]
        num_classes = weight.shape[0] // k
        grad_x = torch.zeros_like(xn) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_r = torch.zeros_like(scale) if need_r else None
        grad_b = torch.zeros_like(bias) if (need_b and bias is not None) else None
        # the target column's softmax probability goes to the target logit
        grad_t = torch.exp(target_logit - lse) * grad_lse
        grad_t = torch.where(labels >= 0, grad_t, torch.zeros_like(grad_t))
        for c0 in range(0, num_classes, chunk):
            c1 = min(num_classes, c0 + chunk)
            z, arg, u = _scores(xn, weight, inv_norm, bias, c0, c1, k)
            g, mask = _modulate(z, neg_threshold, neg_t)
            # p = d lse / d l, times the incoming gradient
            p = (g * scale[:, None]).sub_(lse[:, None]).exp_().mul_(grad_lse[:, None])
            rows, cols = _target_cells(labels, c0, c1)
            p[rows, cols] = 0.0
            if grad_r is not None:
                grad_r += (p * g).sum(dim=1)
            dz = p.mul_(scale[:, None])
            if mask is not None:
                dz = dz * torch.where(mask, neg_t + 2.0 * z, torch.ones_like(z))
            del g, p
            if k > 1:  # the gradient flows to the winning sub-centre of each class
                full = dz.new_zeros(dz.shape[0], c1 - c0, k)
                full.scatter_(2, arg.unsqueeze(2), dz.unsqueeze(2))
                dz = full.view(dz.shape[0], -1)
            lo, hi = c0 * k, c1 * k
            if grad_b is not None:
                grad_b[lo:hi] = dz.sum(dim=0)
            du = dz.mul_(inv_norm[lo:hi]) if normalize else dz
            w = weight[lo:hi]
            if grad_x is not None:
                grad_x.addmm_(du, w)
            if grad_w is not None:
                gw = grad_w[lo:hi]
                torch.mm(du.t(), xn, out=gw)
                if normalize:  # through w / |w|: g - (g.w) w / |w|^2
                    coef = torch.linalg.vecdot(gw, w) * inv_norm[lo:hi] ** 2
                    gw.addcmul_(w, coef[:, None], value=-1.0)
        return grad_x, grad_w, grad_r, grad_t, None, grad_b, None, None, None, None, None


def chunked_logsumexp(
    xn: Tensor,
    weight: Tensor,
    scale: Tensor,
    target_logit: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    normalize: bool = True,
    neg_threshold: Tensor | None = None,
    neg_t: float = 0.0,
    subcenters: int = 1,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """log-sum-exp over classes of a margin head's logits, in chunks; shape (B,).

    Args:
        xn: (B, D) float32 embeddings, already normalised for cosine heads.
        weight: (C * K, D) class centres (K sub-centres per class, class-major); normalised
            per row inside when ``normalize``.
        scale: (B,) row scale r_i of the non-target logits.
        target_logit: (B,) the target logits T_i (with their margin).
        labels: (B,) int64 target class in [0, C), or -1 where this block has no target.
        bias: optional (C,) bias added to the scores (plain softmax).
        neg_threshold, neg_t: CurricularFace modulation of hard negatives.
        chunk_size / memory_budget: classes per chunk, or the bytes its temporaries may use.
    """
    num_classes = weight.shape[0] // subcenters
    chunk = chunk_size or auto_chunk_size(xn.shape[0], num_classes, memory_budget, subcenters)
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _ChunkedLogSumExp.apply(
        xn,
        weight,
        scale,
        target_logit,
        labels,
        bias,
        normalize,
        neg_threshold,
        float(neg_t),
        int(subcenters),
        int(chunk),
    )
