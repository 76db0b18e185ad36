"""The chunked PyTorch path of the margin-softmax terms: a margin head's loss without the B x C
logits.

Every margin head of this package produces logits of one shape::

    l_ij = r_i * g_i(z_ij)      for j != y_i      (z: cosine, or x.W_j + b_j for plain softmax)
    l_iy = T_i = f(z_iy, ...)   (the target logit, with the margin, computed by the head)

with r_i a per-row scale (s, or the feature norm for SphereFace), g_i the identity or a
CurricularFace-style modulation of hard negatives, and T_i the margin-carrying target logit.
The loss is mean_i(logaddexp(T_i, N_i) - T_i), with N_i the log-sum-exp of the non-target
logits of row i.

:func:`torch_margin_terms` returns (N, z_y): it computes N in chunks of classes and the target
scores z_y from the target rows of the weight, and its backward recomputes each chunk's scores
and forms the gradients chunk by chunk, so that at no time more than a (B, chunk) block of
scores exists, and every gradient of the weight lands in one dense buffer.  The cost is one
extra matrix product (four instead of the three of forward + backward), against never holding
B x C.  The head then applies its margin to z_y with ordinary autograd.

Rows whose label is -1 have no target column in this block of classes (used by the sharded
classifier of :mod:`marginface.parallel`): N is then over all the block's classes.

The Triton kernels of :mod:`marginface.heads.engine.triton_path` compute the same (N, z_y) in
tiles of rows x classes in on-chip memory; :func:`marginface.heads.engine.choose_path` is the
one place that decides which runs (:func:`marginface.heads.engine.fused_margin_terms`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads.engine.blocks import Block, target_cells, target_grads
from marginface.heads.engine.chunking import auto_chunk_size


class FusedMarginTerms(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        xn: Tensor,
        weight: Tensor,
        scale: Tensor,
        labels: Tensor,
        bias: Tensor | None,
        normalize: bool,
        neg_threshold: Tensor | None,
        neg_t: float,
        subcenters: int,
        chunk: int,
    ) -> tuple[Tensor, Tensor]:
        num_classes = weight.shape[0] // subcenters
        block = Block(xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, subcenters)
        lse = xn.new_full((xn.shape[0],), -math.inf)
        for c0 in range(0, num_classes, chunk):
            c1 = min(num_classes, c0 + chunk)
            logits, _ = block.logits(c0, c1)
            rows, cols = target_cells(labels, c0, c1)
            logits[rows, cols] = -math.inf
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        z_y, _, _ = block.target_scores(xn)
        z_y = torch.where(labels >= 0, z_y, torch.zeros_like(z_y))
        ctx.save_for_backward(xn, weight, scale, labels, bias, neg_threshold, lse, block.inv_norm)
        ctx.cfg = (normalize, neg_t, subcenters, chunk)
        return lse, z_y

    @staticmethod
    def backward(ctx, grad_lse: Tensor, grad_zy: Tensor):  # type: ignore[override]
        xn, weight, scale, labels, bias, neg_threshold, lse, inv_norm = ctx.saved_tensors
        normalize, neg_t, k, chunk = ctx.cfg
        need_x, need_w, need_r, _, need_b = ctx.needs_input_grad[:5]
        num_classes = weight.shape[0] // k
        block = Block(xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, k, inv_norm)
        # rows with no non-target class (lse = -inf) get no gradient from lse
        grad_lse = torch.where(torch.isfinite(lse), grad_lse, torch.zeros_like(grad_lse))
        lse_safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        # the row's incoming gradient multiplies all its probabilities: fold it into the
        # features for the weight gradient, apply it once to the feature gradient at the end
        a_weighted = block.a * grad_lse[:, None]
        grad_a = torch.zeros_like(xn) if (need_x or need_r) else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_r = torch.zeros_like(scale) if (need_r and not block.fast) else None
        grad_b = torch.zeros_like(bias) if (need_b and bias is not None) else None
        for c0 in range(0, num_classes, chunk):
            c1 = min(num_classes, c0 + chunk)
            lo, hi = c0 * k, c1 * k
            logits, aux = block.logits(c0, c1)
            p = logits.sub_(lse_safe[:, None]).exp_()  # softmax over the non-target classes
            rows, cols = target_cells(labels, c0, c1)
            p[rows, cols] = 0.0
            if aux is None:
                du = p  # d lse / d (scaled score)
            else:
                u, g, mask, arg = aux
                if grad_r is not None:
                    grad_r += (p * g).sum(dim=1) * grad_lse
                du = p.mul_(scale[:, None])
                if mask is not None:
                    du.mul_(torch.where(mask, neg_t + 2.0 * u, torch.ones_like(u)))
                if arg is not None:  # the gradient flows to the winning sub-centre of each class
                    full = du.new_zeros(du.shape[0], c1 - c0, k)
                    full.scatter_(2, arg.unsqueeze(2), du.unsqueeze(2))
                    du = full.view(du.shape[0], -1)
            if grad_b is not None:
                grad_b[lo:hi] = (du * grad_lse[:, None]).sum(dim=0)
            if inv_norm is not None:
                du.mul_(inv_norm[lo:hi])
            w = weight[lo:hi]
            if grad_a is not None:
                grad_a.addmm_(du, w)
            if grad_w is not None:
                gw = grad_w[lo:hi]
                torch.mm(du.t(), a_weighted, out=gw)
                if normalize:  # through w / |w|: g - (g.w) w / |w|^2
                    coef = torch.linalg.vecdot(gw, w) * inv_norm[lo:hi] ** 2
                    gw.addcmul_(w, coef[:, None], value=-1.0)
        grad_x = None
        if grad_a is not None:
            grad_a.mul_(grad_lse[:, None])
            if block.fast:
                if need_r:
                    grad_r = torch.linalg.vecdot(grad_a, xn)
                grad_x = grad_a.mul_(scale[:, None]) if need_x else None
            else:
                grad_x = grad_a if need_x else None
        grad_x = target_grads(block, xn, grad_zy, grad_x, grad_w, grad_b, need_x, need_w)
        return grad_x, grad_w, grad_r, None, grad_b, None, None, None, None, None


def torch_margin_terms(
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
) -> tuple[Tensor, Tensor]:
    """(N, z_y) of :func:`marginface.heads.engine.fused_margin_terms`, in chunks of
    ``chunk_size`` classes (or as many as ``memory_budget`` bytes of temporaries allow)."""
    num_classes = weight.shape[0] // subcenters
    chunk = chunk_size or auto_chunk_size(
        xn.shape[0], num_classes, memory_budget, subcenters, xn.device.type
    )
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return FusedMarginTerms.apply(
        xn,
        weight,
        scale,
        labels,
        bias,
        normalize,
        neg_threshold,
        float(neg_t),
        int(subcenters),
        int(chunk),
    )
