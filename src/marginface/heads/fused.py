"""Chunked, fused margin-softmax: the loss of a margin head without the B x C logits.

Every margin head of this package produces logits of one shape::

    l_ij = r_i * g_i(z_ij)      for j != y_i      (z: cosine, or x.W_j + b_j for plain softmax)
    l_iy = T_i = f(z_iy, ...)   (the target logit, with the margin, computed by the head)

with r_i a per-row scale (s, or the feature norm for SphereFace), g_i the identity or a
CurricularFace-style modulation of hard negatives, and T_i the margin-carrying target logit.
The loss is mean_i(logaddexp(T_i, N_i) - T_i), with N_i the log-sum-exp of the non-target
logits of row i.

:func:`fused_margin_terms` returns (N, z_y): it computes N in chunks of classes and the target
scores z_y from the target rows of the weight, and its backward recomputes each chunk's scores
and forms the gradients chunk by chunk, so that at no time more than a (B, chunk) block of
scores exists, and every gradient of the weight lands in one dense buffer.  The cost is one
extra matrix product (four instead of the three of forward + backward), against never holding
B x C.  The head then applies its margin to z_y with ordinary autograd.

Rows whose label is -1 have no target column in this block of classes (used by the sharded
classifier of :mod:`marginface.parallel`): N is then over all the block's classes.

Two implementations compute the same (N, z_y): the chunked PyTorch code of this module, and
the Triton kernels of :mod:`marginface.heads.triton_margin` (tiles of rows x classes in
on-chip memory, never a (B, chunk) block in GPU memory).  :func:`choose_path` is the one place
that decides which runs.
"""

from __future__ import annotations

import functools
import math
import os

import torch
from torch import Tensor

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


#: Values of ``path`` (:func:`fused_margin_terms`, ``MarginHead.loss``).
PATHS = ("auto", "torch", "triton")
#: Environment variable read by ``path="auto"``: ``triton`` lets it take the kernel where the
#: kernel can run; ``auto`` (or unset) and ``torch`` keep the PyTorch path everywhere.
PATH_ENV = "MARGINFACE_FUSED_PATH"
#: The dtypes the Triton kernel takes (float32 accumulation; float64 computes in float64).
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: ... and those ``path="auto"`` sends to it on CUDA (float64 stays on the PyTorch path).
_AUTO_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def triton_available() -> bool:
    """True when the optional ``triton`` package imports (imported once, on first call)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def choose_path(
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    *,
    subcenters: int = 1,
    path: str = "auto",
) -> str:
    """Which implementation of :func:`fused_margin_terms` runs: ``"torch"`` or ``"triton"``.

    ``path="auto"`` (the default): the chunked PyTorch path, unless the environment variable
    ``MARGINFACE_FUSED_PATH`` is ``triton``: then the Triton kernel for float32, bfloat16 and
    float16 inputs on a CUDA device when ``triton`` imports and the head has one centre per
    class, and the PyTorch path otherwise (CPU, float64, sub-centres, no triton).  The kernel is
    opt-in until it has been compiled and timed on a GPU (``benchmarks/heads_gpu.py``).
    ``path="torch"`` always
    takes the PyTorch path; ``path="triton"`` takes the kernel or raises a ValueError saying
    why it can't (sub-centres, a dtype it lacks, no triton, or a CPU tensor while the kernels
    are compiled: they run on CPU tensors only under Triton's interpreter, with
    ``TRITON_INTERPRET=1`` set before :mod:`marginface.heads.triton_margin` is imported).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}; got {path!r}")
    device = torch.device(device)
    if path == "auto":
        env = os.environ.get(PATH_ENV, "auto") or "auto"
        if env not in PATHS:
            raise ValueError(f"{PATH_ENV} must be 'auto', 'torch' or 'triton', got {env!r}")
        use = (
            env == "triton"
            and device.type == "cuda"
            and subcenters == 1
            and dtype in _AUTO_TRITON_DTYPES
            and triton_available()
        )
        return "triton" if use else "torch"
    if path == "torch":
        return "torch"
    if subcenters != 1:
        raise ValueError(
            f"path='triton' has no sub-centres (subcenters={subcenters}); use path='torch' or "
            "'auto' (which takes the PyTorch path for them)"
        )
    if dtype not in TRITON_DTYPES:
        raise ValueError(f"path='triton' takes float16/bfloat16/float32/float64, got {dtype}")
    if not triton_available():
        raise ValueError("path='triton' needs the triton package (pip install triton)")
    from marginface.heads.triton_margin import INTERPRETED

    if device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"path='triton' runs on CUDA tensors (or on CPU tensors under Triton's interpreter, "
            f"TRITON_INTERPRET=1 set before marginface.heads.triton_margin is imported); got "
            f"device {device.type!r}"
        )
    return "triton"


class _Block:
    """What forward and backward share: the inputs, prepared once per call."""

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


def _target_grads(
    block: _Block,
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


def _target_cells(labels: Tensor, c0: int, c1: int) -> tuple[Tensor, Tensor]:
    rows = ((labels >= c0) & (labels < c1)).nonzero().squeeze(1)
    return rows, labels[rows] - c0


class _FusedMarginTerms(torch.autograd.Function):
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
        block = _Block(xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, subcenters)
        lse = xn.new_full((xn.shape[0],), -math.inf)
        for c0 in range(0, num_classes, chunk):
            c1 = min(num_classes, c0 + chunk)
            logits, _ = block.logits(c0, c1)
            rows, cols = _target_cells(labels, c0, c1)
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
        block = _Block(
            xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, k, inv_norm
        )
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
            rows, cols = _target_cells(labels, c0, c1)
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
        grad_x = _target_grads(block, xn, grad_zy, grad_x, grad_w, grad_b, need_x, need_w)
        return grad_x, grad_w, grad_r, None, grad_b, None, None, None, None, None


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
    if choose_path(xn.device, xn.dtype, subcenters=subcenters, path=path) == "triton":
        from marginface.heads.triton_margin import triton_margin_terms

        return triton_margin_terms(
            xn,
            weight,
            scale,
            labels,
            bias=bias,
            normalize=normalize,
            neg_threshold=neg_threshold,
            neg_t=neg_t,
        )
    num_classes = weight.shape[0] // subcenters
    chunk = chunk_size or auto_chunk_size(
        xn.shape[0], num_classes, memory_budget, subcenters, xn.device.type
    )
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _FusedMarginTerms.apply(
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
