"""The Triton path: kernels for the margin-softmax terms (N, z_y) of ``fused_margin_terms``.

The same contract as the chunked PyTorch path of :mod:`marginface.heads.engine.torch_path`,
computed in tiles of BLOCK_B rows x BLOCK_C class centres that live in on-chip memory only:

* forward: per tile, the dot products x_i.w_j (a loop over D in BLOCK_D slices), times the
  centres' inverse norms (normalising on the fly), plus the bias, through the optional
  CurricularFace modulation g, times the row scale r_i: the logits l_ij = r_i g(u_ij).  The
  target column (and the columns past C) are masked to -inf before a running log-sum-exp over
  the tile's classes, so the target never enters N.  Each program covers a split of the
  classes for one block of rows; PyTorch combines the splits' log-sum-exps (B x splits
  numbers).  z_y comes from the target rows only (B x D), in PyTorch, shared with the
  PyTorch path.
* backward: per tile, the logits again, p_ij = exp(l_ij - N_i) (0 at the target), and
  dl_ij = G_i p_ij with G the incoming gradient of N; then du_ij = dl_ij r_i g'(u_ij); the
  tile adds du . w into the features' gradient and du^T . x into the centres' gradient
  (atomic float32 adds: the order of the additions, and so the last bits, vary from run to
  run), sum_i du_ij (x_i.w^_j) per centre for the projection through w / |w|, sum_j dl_ij
  g_ij per row for the row scale's gradient, and sum_i du_ij for the bias.  No tile is
  skipped: gradient filtering (skipping tiles whose probabilities are below float32's
  resolution, as Cut Cross-Entropy does) drops up to the whole gradient of a rarely hit
  centre and, summed over a million classes, a share of the features' gradient that no fixed
  threshold bounds below the tolerance, so it is not done.

Precision: float32 accumulation for float16, bfloat16 and float32 inputs; float64 inputs
compute in float64.  float32 dot products follow ``torch.get_float32_matmul_precision()``
("highest": IEEE float32, as PyTorch's own matmul; "high"/"medium": TF32).  In the backward
pass du is rounded to bfloat16 before its two products for bfloat16 inputs (as a bfloat16
matmul's backward rounds its incoming gradient); float16 inputs are upcast to float32 there
instead (float16's range would flush the small probabilities to zero).

Under Triton's interpreter (``TRITON_INTERPRET=1`` in the environment before this module is
imported) the same kernels run on CPU tensors; there bfloat16 tiles are upcast to float32
before each dot product (bit-identical products: a bfloat16 x bfloat16 product is exact in
float32), because the interpreter's dot reads bfloat16 storage as integers.

Sub-centres are not handled here: :func:`marginface.heads.engine.choose_path` sends them to
the PyTorch path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from marginface.heads.engine.blocks import Block, inverse_norms, target_grads


@triton.jit
def _tile_dot(
    X,
    W,
    rows64,
    cols64,
    row_ok,
    col_ok,
    D,
    stride_x,
    stride_w,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """(BLOCK_B, BLOCK_C) dot products x_i . w_j, zero outside the rows and columns."""
    acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=ACC)
    for d0 in range(0, D, BLOCK_D):
        dk = d0 + tl.arange(0, BLOCK_D)
        d_ok = dk < D
        x = tl.load(
            X + rows64[:, None] * stride_x + dk[None, :],
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        w = tl.load(
            W + cols64[:, None] * stride_w + dk[None, :],
            mask=col_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        if UPCAST:
            x = x.to(ACC)
            w = w.to(ACC)
        acc = tl.dot(x, tl.trans(w), acc, input_precision=PRECISION, out_dtype=ACC)
    return acc


@triton.jit
def _tile_logits(
    acc,
    cols,
    col_ok,
    INV_NORM,
    BIAS,
    r,
    thr,
    neg_t,
    HAS_NORM: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_NEG: tl.constexpr,
):
    """From the dot products: the cosines x.w^_j (the dot products themselves without
    normalisation), u = cosine + bias, g = u or its modulation u (t + u) above the row's
    threshold, and the logits r g."""
    cos = acc
    if HAS_NORM:
        cos = acc * tl.load(INV_NORM + cols, mask=col_ok, other=0.0)[None, :]
    u = cos
    if HAS_BIAS:
        u = cos + tl.load(BIAS + cols, mask=col_ok, other=0.0)[None, :]
    g = u
    if HAS_NEG:
        g = tl.where(u > thr[:, None], u * (neg_t + u), u)
    return cos, u, g, g * r[:, None]


@triton.jit
def _row_inputs(SCALE, LABELS, THR, NEG_T, rows, row_ok, HAS_NEG: tl.constexpr):
    """Per row: label (-1 outside), scale r, modulation threshold; and the scalar t."""
    label = tl.load(LABELS + rows, mask=row_ok, other=-1)
    r = tl.load(SCALE + rows, mask=row_ok, other=0.0)
    thr = r
    neg_t = tl.load(NEG_T)
    if HAS_NEG:
        thr = tl.load(THR + rows, mask=row_ok, other=0.0)
    return label, r, thr, neg_t


@triton.jit
def _forward_kernel(
    X,
    W,
    INV_NORM,
    BIAS,
    SCALE,
    LABELS,
    THR,
    NEG_T,
    OUT,
    B,
    C,
    D,
    stride_x,
    stride_w,
    n_row_blocks,
    tiles_per_split,
    HAS_NORM: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_NEG: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """OUT[split, i]: log-sum-exp of row i's non-target logits over one split of classes."""
    pid = tl.program_id(0)
    rb = pid % n_row_blocks  # row blocks vary fastest: they share the centres' tiles in cache
    split = pid // n_row_blocks
    rows = rb * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    rows64 = rows.to(tl.int64)
    label, r, thr, neg_t = _row_inputs(SCALE, LABELS, THR, NEG_T, rows, row_ok, HAS_NEG)
    m = tl.zeros((BLOCK_B,), dtype=ACC) - float("inf")
    s = tl.zeros((BLOCK_B,), dtype=ACC)
    for t in range(0, tiles_per_split):
        cols = (split * tiles_per_split + t) * BLOCK_C + tl.arange(0, BLOCK_C)
        col_ok = cols < C
        acc = _tile_dot(
            X, W, rows64, cols.to(tl.int64), row_ok, col_ok, D, stride_x, stride_w,
            BLOCK_B, BLOCK_C, BLOCK_D, ACC, UPCAST, PRECISION,
        )  # fmt: skip
        cos, u, g, logits = _tile_logits(
            acc, cols, col_ok, INV_NORM, BIAS, r, thr, neg_t, HAS_NORM, HAS_BIAS, HAS_NEG
        )
        keep = col_ok[None, :] & (cols[None, :] != label[:, None])
        logits = tl.where(keep, logits, -float("inf"))
        m_new = tl.maximum(m, tl.max(logits, axis=1))
        m_ref = tl.where(m_new == -float("inf"), 0.0, m_new)  # rows with nothing yet
        s = s * tl.exp(m - m_ref) + tl.sum(tl.exp(logits - m_ref[:, None]), axis=1)
        m = m_new
    lse = tl.where(s > 0.0, m + tl.log(tl.where(s > 0.0, s, 1.0)), -float("inf"))
    tl.store(OUT + split * B + rows, lse, mask=row_ok)


@triton.jit
def _backward_kernel(
    X,
    W,
    INV_NORM,
    BIAS,
    SCALE,
    LABELS,
    THR,
    NEG_T,
    LSE,
    GLSE,
    GX,
    GW,
    GR,
    GB,
    COEF,
    B,
    C,
    D,
    stride_x,
    stride_w,
    n_row_blocks,
    HAS_NORM: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_NEG: tl.constexpr,
    NEED_X: tl.constexpr,
    NEED_W: tl.constexpr,
    NEED_R: tl.constexpr,
    NEED_B: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
    DU_BF16: tl.constexpr,
):
    """Adds one tile's share of the gradients of N (incoming gradient GLSE) into GX (B, D),
    GW (C, D), GR (B,), GB (C,) and COEF (C,) = sum_i du_ij x_i.w^_j."""
    pid = tl.program_id(0)
    rb = pid % n_row_blocks
    cb = pid // n_row_blocks
    rows = rb * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < B
    col_ok = cols < C
    rows64 = rows.to(tl.int64)
    cols64 = cols.to(tl.int64)
    label, r, thr, neg_t = _row_inputs(SCALE, LABELS, THR, NEG_T, rows, row_ok, HAS_NEG)
    lse = tl.load(LSE + rows, mask=row_ok, other=0.0)  # finite: 0 where N = -inf
    grad = tl.load(GLSE + rows, mask=row_ok, other=0.0)  # 0 where N = -inf
    acc = _tile_dot(
        X, W, rows64, cols64, row_ok, col_ok, D, stride_x, stride_w,
        BLOCK_B, BLOCK_C, BLOCK_D, ACC, UPCAST, PRECISION,
    )  # fmt: skip
    cos, u, g, logits = _tile_logits(
        acc, cols, col_ok, INV_NORM, BIAS, r, thr, neg_t, HAS_NORM, HAS_BIAS, HAS_NEG
    )
    keep = row_ok[:, None] & col_ok[None, :] & (cols[None, :] != label[:, None])
    p = tl.where(keep, tl.exp(logits - lse[:, None]), 0.0)  # softmax over the non-targets
    dl = p * grad[:, None]  # dN/dl times the incoming gradient
    if NEED_R:
        tl.atomic_add(GR + rows, tl.sum(dl * g, axis=1), mask=row_ok)
    du = dl * r[:, None]
    if HAS_NEG:
        du = du * tl.where(u > thr[:, None], neg_t + 2.0 * u, 1.0)
    if NEED_B:
        tl.atomic_add(GB + cols, tl.sum(du, axis=0), mask=col_ok)
    if HAS_NORM:
        if NEED_W:
            tl.atomic_add(COEF + cols, tl.sum(du * cos, axis=0), mask=col_ok)
        du = du * tl.load(INV_NORM + cols, mask=col_ok, other=0.0)[None, :]
    if DU_BF16:  # bfloat16 inputs: the products take du in bfloat16 (float32 accumulation)
        du = du.to(tl.bfloat16)
        if UPCAST:
            du = du.to(ACC)
    for d0 in range(0, D, BLOCK_D):
        dk = d0 + tl.arange(0, BLOCK_D)
        d_ok = dk < D
        if NEED_X:
            w = tl.load(
                W + cols64[:, None] * stride_w + dk[None, :],
                mask=col_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            w = w.to(du.dtype)
            gx = tl.dot(du, w, input_precision=PRECISION, out_dtype=ACC)
            tl.atomic_add(
                GX + rows64[:, None] * D + dk[None, :], gx, mask=row_ok[:, None] & d_ok[None, :]
            )
        if NEED_W:
            x = tl.load(
                X + rows64[:, None] * stride_x + dk[None, :],
                mask=row_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            x = x.to(du.dtype)
            gw = tl.dot(tl.trans(du), x, input_precision=PRECISION, out_dtype=ACC)
            tl.atomic_add(
                GW + cols64[:, None] * D + dk[None, :], gw, mask=col_ok[:, None] & d_ok[None, :]
            )


#: True when the kernels above run under Triton's interpreter (on CPU tensors).
INTERPRETED = type(_forward_kernel).__name__ == "InterpretedFunction"

_TL = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _precision(dtype: torch.dtype) -> str:
    """tl.dot's input precision for float32 operands, as torch's float32 matmuls."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "ieee"


def default_blocks(dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(BLOCK_B, BLOCK_C, BLOCK_D, num_warps): 16s under the interpreter (small numpy tiles);
    on a GPU 64 x 128 x 64 with 8 warps (32 x 64 x 32 with 4 for float64).  Guesses, not yet
    tuned on a GPU."""
    if INTERPRETED:
        return 16, 16, 16, 4
    if dtype == torch.float64:
        return 32, 64, 32, 4
    return 64, 128, 64, 8


def _splits(row_blocks: int, class_tiles: int, device: torch.device) -> int:
    """Class splits of the forward pass: about 4 programs per multiprocessor in all."""
    if device.type == "cuda" and not INTERPRETED:
        units = torch.cuda.get_device_properties(device).multi_processor_count
    else:
        units = 2
    return max(1, min(class_tiles, -(-4 * units // row_blocks)))


class _Inputs:
    """The kernels' arguments, prepared once per call (contiguous, accumulation dtype)."""

    def __init__(self, xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, inv_norm):
        self.acc = _acc_dtype(xn.dtype)
        self.x = xn.contiguous()
        self.w = weight.contiguous()
        self.scale = scale.to(self.acc).contiguous()
        self.labels = labels.to(torch.int64).contiguous()
        self.bias = None if bias is None else bias.to(self.acc).contiguous()
        self.thr = None if neg_threshold is None else neg_threshold.to(self.acc).contiguous()
        self.neg_t = torch.tensor([float(neg_t)], dtype=self.acc, device=xn.device)
        if normalize and inv_norm is None:
            inv_norm = inverse_norms(self.w, self.acc)
        self.inv_norm = inv_norm if normalize else None
        self.blocks = default_blocks(xn.dtype)

    def common(self) -> tuple:
        """The leading pointer arguments of both kernels (unused ones: a stand-in tensor)."""
        dummy = self.scale
        return (
            self.x,
            self.w,
            dummy if self.inv_norm is None else self.inv_norm,
            dummy if self.bias is None else self.bias,
            self.scale,
            self.labels,
            dummy if self.thr is None else self.thr,
            self.neg_t,
        )

    def constexprs(self) -> dict:
        bb, bc, bd, warps = self.blocks
        return dict(
            num_warps=warps,
            HAS_NORM=self.inv_norm is not None,
            HAS_BIAS=self.bias is not None,
            HAS_NEG=self.thr is not None,
            BLOCK_B=bb,
            BLOCK_C=bc,
            BLOCK_D=bd,
            ACC=_TL[self.acc],
            UPCAST=INTERPRETED and self.x.dtype == torch.bfloat16,
            PRECISION=_precision(self.x.dtype),
        )

    def block(self) -> Block:
        """The PyTorch path's view of the same inputs, for the target scores z_y."""
        x = self.x.to(self.acc)
        return Block(
            x, self.w, self.scale, self.labels, self.bias, self.inv_norm is not None,
            None, 0.0, 1, self.inv_norm,
        )  # fmt: skip


def _forward_lse(inp: _Inputs) -> Tensor:
    """N (B,), in the accumulation dtype."""
    b, d = inp.x.shape
    c = inp.w.shape[0]
    bb, bc = inp.blocks[:2]
    row_blocks, class_tiles = -(-b // bb), -(-c // bc)
    if b == 0 or c == 0:
        return inp.x.new_full((b,), float("-inf"), dtype=inp.acc)
    splits = _splits(row_blocks, class_tiles, inp.x.device)
    tiles_per_split = -(-class_tiles // splits)
    splits = -(-class_tiles // tiles_per_split)
    out = torch.empty(splits, b, dtype=inp.acc, device=inp.x.device)
    _forward_kernel[(row_blocks * splits,)](
        *inp.common(),
        out,
        b,
        c,
        d,
        inp.x.stride(0),
        inp.w.stride(0),
        row_blocks,
        tiles_per_split,
        **inp.constexprs(),
    )
    return torch.logsumexp(out, dim=0)


class _TritonMarginTerms(torch.autograd.Function):
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
    ) -> tuple[Tensor, Tensor]:
        inp = _Inputs(xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, None)
        lse = _forward_lse(inp)
        z_y, _, _ = inp.block().target_scores(inp.x.to(inp.acc))
        z_y = torch.where(inp.labels >= 0, z_y, torch.zeros_like(z_y))
        ctx.save_for_backward(xn, weight, scale, labels, bias, neg_threshold, lse, inp.inv_norm)
        ctx.cfg = (normalize, neg_t)
        return lse, z_y

    @staticmethod
    def backward(ctx, grad_lse: Tensor, grad_zy: Tensor):  # type: ignore[override]
        xn, weight, scale, labels, bias, neg_threshold, lse, inv_norm = ctx.saved_tensors
        normalize, neg_t = ctx.cfg
        need_x, need_w, need_r, _, need_b = ctx.needs_input_grad[:5]
        need_b = need_b and bias is not None
        inp = _Inputs(xn, weight, scale, labels, bias, normalize, neg_threshold, neg_t, inv_norm)
        acc = inp.acc
        finite = torch.isfinite(lse)  # rows with no non-target class get no gradient from N
        grad = torch.where(finite, grad_lse.to(acc), torch.zeros_like(lse)).contiguous()
        lse_safe = torch.where(finite, lse, torch.zeros_like(lse)).contiguous()
        b, d = inp.x.shape
        c = inp.w.shape[0]
        new = dict(dtype=acc, device=xn.device)
        gx = torch.zeros(b, d, **new) if need_x else None
        gw = torch.zeros(c, d, **new) if need_w else None
        gr = torch.zeros(b, **new) if need_r else None
        gb = torch.zeros(c, **new) if need_b else None
        coef = torch.zeros(c, **new) if (need_w and normalize) else None
        bb, bc = inp.blocks[:2]
        row_blocks, class_tiles = -(-b // bb), -(-c // bc)
        if b and c and (need_x or need_w or need_r or need_b):
            dummy = lse_safe
            _backward_kernel[(row_blocks * class_tiles,)](
                *inp.common(),
                lse_safe,
                grad,
                dummy if gx is None else gx,
                dummy if gw is None else gw,
                dummy if gr is None else gr,
                dummy if gb is None else gb,
                dummy if coef is None else coef,
                b,
                c,
                d,
                inp.x.stride(0),
                inp.w.stride(0),
                row_blocks,
                NEED_X=need_x,
                NEED_W=need_w,
                NEED_R=need_r,
                NEED_B=need_b,
                DU_BF16=xn.dtype == torch.bfloat16,
                **inp.constexprs(),
            )
        if coef is not None:  # through w / |w|: g_j - (g_j . w^_j) w^_j / |w_j|
            gw.addcmul_(inp.w, (coef * inp.inv_norm**2)[:, None], value=-1.0)
        # the target scores z_y = x.w_y / |w_y| (+ b_y): the PyTorch path's code
        gx = target_grads(inp.block(), inp.x.to(acc), grad_zy.to(acc), gx, gw, gb, need_x, need_w)
        return (
            None if gx is None else gx.to(xn.dtype),
            None if gw is None else gw.to(weight.dtype),
            None if gr is None else gr.to(scale.dtype),
            None,
            None if gb is None else gb.to(bias.dtype),
            None,
            None,
            None,
        )


def triton_margin_terms(
    xn: Tensor,
    weight: Tensor,
    scale: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    normalize: bool = True,
    neg_threshold: Tensor | None = None,
    neg_t: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """(N, z_y) as :func:`marginface.heads.engine.fused_margin_terms` (one centre per class),
    by the Triton kernels; N and z_y in float32 (float64 for float64 inputs).  Call it through
    ``fused_margin_terms(..., path="triton")``, which checks that the kernel applies."""
    if xn.dim() != 2 or weight.dim() != 2 or xn.shape[1] != weight.shape[1]:
        raise ValueError(
            f"xn (B, D) and weight (C, D) must share D, got {tuple(xn.shape)} and "
            f"{tuple(weight.shape)}"
        )
    if xn.dtype != weight.dtype or xn.dtype not in _TL:
        raise ValueError(
            f"xn and weight must share one of float16/bfloat16/float32/float64, got {xn.dtype} "
            f"and {weight.dtype}"
        )
    return _TritonMarginTerms.apply(
        xn, weight, scale, labels, bias, bool(normalize), neg_threshold, float(neg_t)
    )
