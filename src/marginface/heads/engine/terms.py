"""The margin-softmax terms of a head's loss, by the path :func:`choose_path` decides, and the
loss from them.

Every margin head of the package produces logits of one shape::

    l_ij = r_i * g_i(z_ij)      for j != y_i      (z: cosine, or x.W_j + b_j for plain softmax)
    l_iy = T_i = f(z_iy, ...)   (the target logit, with the margin, computed by the head)

with r_i a per-row scale (s, or the feature norm for SphereFace), g_i the identity or a
CurricularFace-style modulation of hard negatives, and T_i the margin-carrying target logit.
The loss is mean_i(logaddexp(T_i, N_i) - T_i), with N_i the log-sum-exp of the non-target
logits of row i: :func:`fused_margin_terms` gives N and the target scores z_y without the
B x C logits (:mod:`~marginface.heads.engine.torch_path`, or the kernels of
:mod:`~marginface.heads.engine.triton_path`), the head applies its margin to z_y.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads.engine.path import choose_path
from marginface.heads.engine.torch_path import torch_margin_terms


def fused_margin_terms(
    xn: Tensor,
    weight: Tensor,
    scale: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    normalize: bool = True,
    neg_threshold: Tensor | None = None,
    neg_t: float = 0.0,
    subcenters: int = 1,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    path: str = "auto",
) -> tuple[Tensor, Tensor]:
    """The two pieces of a margin head's loss, computed in chunks of classes (PyTorch) or
    in on-chip tiles (the Triton kernel; see :func:`choose_path`).

    Args:
        xn: (B, D) embeddings, already normalised for cosine heads.
        weight: (C * K, D) class centres (K sub-centres per class, class-major); normalised
            per row inside when ``normalize``.
        scale: (B,) row scale r_i of the non-target logits.
        labels: (B,) int64 target class in [0, C), or -1 where this block has no target.
        bias: optional (C,) bias added to the scores, before the row scale (plain softmax).
        neg_threshold, neg_t: CurricularFace modulation of hard negatives.
        chunk_size / memory_budget: classes per chunk, or the bytes its temporaries may use
            (the PyTorch path; the Triton kernel works in tiles of its own).
        path: ``"auto"``, ``"torch"`` or ``"triton"``: see :func:`choose_path`.

    Returns:
        (N, z_y): N (B,) the log-sum-exp over the non-target logits (-inf if none), z_y (B,)
        the target score (cosine, max over sub-centres; 0 where the label is -1); in the
        inputs' dtype (float32 for half-precision inputs on the Triton path).
    """
    terms = dict(bias=bias, normalize=normalize, neg_threshold=neg_threshold, neg_t=neg_t)
    if choose_path(xn.device, xn.dtype, subcenters=subcenters, path=path) == "triton":
        from marginface.heads.engine.triton_path import triton_margin_terms

        return triton_margin_terms(xn, weight, scale, labels, **terms)
    chunking = dict(subcenters=subcenters, chunk_size=chunk_size, memory_budget=memory_budget)
    return torch_margin_terms(xn, weight, scale, labels, **terms, **chunking)


def margin_softmax_loss(target: Tensor, lse_neg: Tensor) -> Tensor:
    """The mean cross-entropy from the target logits T (B,) and the non-target log-sum-exp
    N (B,) of :func:`fused_margin_terms`: mean_i(logaddexp(T_i, N_i) - T_i)."""
    return (torch.logaddexp(target, lse_neg) - target).mean()


def chunked_logsumexp(
    xn: Tensor,
    weight: Tensor,
    scale: Tensor,
    target_logit: Tensor,
    labels: Tensor,
    **kwargs,
) -> Tensor:
    """log-sum-exp over all classes of a block, (B,), with ``target_logit`` (B,) in each row's
    target column (ignored where the label is -1).  Keyword arguments as
    :func:`fused_margin_terms`."""
    lse_neg, _ = fused_margin_terms(xn, weight, scale, labels, **kwargs)
    target = torch.where(labels >= 0, target_logit, torch.full_like(target_logit, -math.inf))
    return torch.logaddexp(lse_neg, target)
