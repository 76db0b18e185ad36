"""What the two paths of the margin-softmax terms share: the inputs of one call prepared once
(:class:`Block`), the centres' inverse norms and the gradients of the target scores."""

from __future__ import annotations

import torch
from torch import Tensor

from marginface.heads._math import EPS


class Block:
    """What forward and backward share: the inputs, prepared once per call (the PyTorch path's
    chunks, the Triton path's target scores)."""

    def __init__(
        self, xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, k, inv_norm=None
    ):
        self.weight, self.labels, self.bias, self.k = weight, labels, bias, k
        self.neg_threshold, self.neg_t = neg_threshold, neg_t
        if normalize and inv_norm is None:  # the backward pass reuses the forward's
            inv_norm = inverse_norms(weight)
        self.inv_norm = inv_norm if normalize else None
        # fast path: the row scale is folded into the features, logits = (r x) . (W / |W|);
        # with a bias the logits are r (x.w + b), as the head's forward has them
        self.fast = neg_threshold is None and k == 1 and bias is None
        self.scale = scale
        self.a = xn * scale[:, None] if self.fast else xn

    def logits(self, c0: int, c1: int):
        """Logits of classes [c0, c1), (B, c1 - c0), target columns not yet removed, plus what
        the backward pass needs: None on the fast path, (z, g, mask, arg) on the general one."""
        k, lo, hi = self.k, c0 * self.k, c1 * self.k
        u = self.a @ self.weight[lo:hi].t()
        if self.inv_norm is not None:
            u.mul_(self.inv_norm[lo:hi])
        if self.bias is not None:
            u.add_(self.bias[lo:hi])
        if self.fast:
            return u, None
        arg = None
        if k > 1:
            u, arg = u.view(u.shape[0], c1 - c0, k).max(dim=2)
        mask = None
        if self.neg_threshold is not None:
            mask = u > self.neg_threshold[:, None]
            g = torch.where(mask, u * (self.neg_t + u), u)
        else:
            g = u
        return g * self.scale[:, None], (u, g, mask, arg)

    def target_rows(self) -> Tensor:
        """(B, K) row indices of each label's sub-centres (label -1: row 0, ignored)."""
        y = self.labels.clamp_min(0)
        return y[:, None] * self.k + torch.arange(self.k, device=y.device)

    def target_scores(self, xn: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z_y (B,), the winning target row (B,) and its centre as used, normalised (B, D)."""
        rows = self.target_rows()
        w = self.weight[rows].to(xn.dtype)  # (B, K, D)
        if self.inv_norm is not None:
            w = w * self.inv_norm[rows][..., None]
        z = torch.einsum("bd,bkd->bk", xn, w)
        if self.bias is not None:
            z = z + self.bias[rows]
        z, arg = z.max(dim=1)
        return z, rows.gather(1, arg[:, None]).squeeze(1), w[torch.arange(len(arg)), arg]


def inverse_norms(weight: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """1 / max(|w_j|, eps) of each row of ``weight``, (rows,), as ``F.normalize`` divides;
    ``dtype``: compute (and return) in this dtype (float32 for half-precision centres)."""
    return 1.0 / torch.linalg.vector_norm(weight, dim=1, dtype=dtype).clamp_min(EPS)


def target_grads(
    block: Block,
    xn: Tensor,
    grad_zy: Tensor,
    grad_x: Tensor | None,
    grad_w: Tensor | None,
    grad_b: Tensor | None,
    need_x: bool,
    need_w: bool,
) -> Tensor | None:
    """Adds the gradients of the target scores z_y = x.w_y / |w_y| (+ b_y) (gradient
    ``grad_zy``; none from label -1 rows) into ``grad_w`` and ``grad_b`` in place and into
    ``grad_x``, which it returns (a new tensor if ``grad_x`` is None and ``need_x``)."""
    labels, inv_norm = block.labels, block.inv_norm
    g_zy = torch.where(labels >= 0, grad_zy, torch.zeros_like(grad_zy)).to(xn.dtype)
    if need_x or need_w or grad_b is not None:
        z_y, row, w_used = block.target_scores(xn)
        if need_x:
            grad_x = grad_x if grad_x is not None else torch.zeros_like(xn)
            grad_x.addcmul_(w_used, g_zy[:, None])
        if need_w:
            if inv_norm is not None:
                gw_rows = (xn - z_y[:, None] * w_used) * (g_zy * inv_norm[row])[:, None]
            else:
                gw_rows = xn * g_zy[:, None]
            grad_w.index_add_(0, row, gw_rows.to(grad_w.dtype))
        if grad_b is not None:
            grad_b.index_add_(0, row, g_zy.to(grad_b.dtype))
    return grad_x


def target_cells(labels: Tensor, c0: int, c1: int) -> tuple[Tensor, Tensor]:
    rows = ((labels >= c0) & (labels < c1)).nonzero().squeeze(1)
    return rows, labels[rows] - c0
