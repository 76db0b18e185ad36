"""The Triton kernel of the fused margin loss against the chunked PyTorch path.

On a machine without CUDA the kernels run on CPU tensors under Triton's interpreter: this
module sets ``TRITON_INTERPRET=1`` before ``marginface.heads.engine.triton_path`` is imported (the
interpreter is chosen when the kernels are decorated, at that import); with CUDA they run
natively on the GPU.  Skipped when triton is not installed (``pip install -e .[dev]``
installs it).

Tolerances are bounds derived from the arithmetic, not tuned (eps: the dtype's machine
epsilon, twice its unit roundoff; K classes, B rows, D the width):

* a logit l = r g(u), u = x.w n + b: the dot product over D terms is off by at most
  D eps |x| |w| n, the scalings add a few roundings: |dl| <= (D + 4) eps r G' U + 3 eps r Gm,
  with U = |x| max|w n| + max|b| bounding |u|, G' >= |g'(u)| (1, or |t| + 2U with the
  modulation) and Gm >= |g(u)|;
* N = log sum exp over K terms: |dN| <= max|dl| + (3K + log(K + 1) + 4) eps + 2 eps |N|
  (a sum of K positive terms in any order, the online rescaling per tile, exp's argument
  error weighted by p: sum_j p_j |l_j - N| <= log K, the final log and addition);
* each probability p = exp(l - N) then has relative error rho <= 2 |dN| + log(K + 1) eps;
  a gradient entry is a sum of terms whose absolute values add up to at most M (the
  magnitudes below), each off by rho plus the roundings of its products and of a sum over
  K (features, scale) or B (centres, bias) terms: |d grad| <= M (rho + (K + B + D + 8) eps),
  plus, for bfloat16 inputs, bfloat16's eps for du's rounding before the products;
* a float32 (or half-precision) result is compared with the float64 PyTorch path (error
  negligible beside the bound), a float64 result with the float64 PyTorch path (twice the
  float64 bound: both err).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

CUDA = torch.cuda.is_available()
if not CUDA:  # before triton_path (its kernels are decorated on import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

import marginface  # noqa: E402
from marginface.heads.engine import (  # noqa: E402
    PATH_ENV,
    choose_path,
    chunked_logsumexp,
    fused_margin_terms,
    triton_path,
)

if not CUDA and not triton_path.INTERPRETED:
    pytest.skip(
        "no CUDA, and triton_path was imported before TRITON_INTERPRET=1 was set",
        allow_module_level=True,
    )

DEVICE = "cuda" if CUDA else "cpu"
F64 = torch.float64


# --------------------------------------------------------------------------- the bounds
def _bounds(dtype, xn, w, scale, bias, t, normalize, grad_n, grad_z, lse):
    """Bounds (see the module docstring) on the errors of N (B,), z_y (B,) and of the
    gradients of xn, w, scale, bias (one number each), for inputs in ``dtype`` and
    incoming gradients grad_n, grad_z (B,)."""
    eps = torch.finfo(torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype).eps
    e_du = torch.finfo(torch.bfloat16).eps if dtype == torch.bfloat16 else 0.0
    x64, w64 = xn.detach().double().cpu(), w.detach().double().cpu()
    b, d = x64.shape
    k = w64.shape[0]
    norms = w64.norm(dim=1)
    n = 1.0 / norms.clamp_min(1e-12) if normalize else torch.ones_like(norms)
    w_unit = float((w64.abs() * n[:, None]).max())  # max |w_jk| n_j
    w_norm = float((norms * n).max())  # max |w_j| n_j
    b_max = 0.0 if bias is None else float(bias.detach().abs().max())
    x_norm = x64.norm(dim=1)
    r = scale.detach().double().abs().cpu()
    u = x_norm * w_norm + b_max  # bounds |u| per row
    g1 = torch.ones_like(u) if t is None else torch.clamp_min(abs(t) + 2 * u, 1.0)
    gm = u if t is None else torch.maximum(u, u * (abs(t) + u))
    dl = (d + 4) * eps * r * g1 * u + 3 * eps * r * gm
    lse = lse.detach().double().cpu()
    n_abs = torch.where(torch.isfinite(lse), lse.abs(), torch.zeros_like(lse))
    tol_n = dl + (3 * k + math.log(k + 1) + 4) * eps + 2 * eps * n_abs
    tol_z = (d + 4) * eps * x_norm * w_norm + eps * b_max
    gn, gz = grad_n.detach().double().abs().cpu(), grad_z.detach().double().abs().cpu()
    rel = float(2 * tol_n.max()) + math.log(k + 1) * eps + (k + b + d + 8) * eps + e_du
    x_max = float(x64.abs().max())
    m_x = float((gn * r * g1).max()) * w_unit + float(gz.max()) * w_unit
    m_w = float(n.max()) * (
        2 * float(g1.max()) * x_max * float((gn * r).sum()) + float(gz.sum()) * (x_max + w_norm)
    )
    m_r = float((gn * gm).max())
    m_b = float(g1.max()) * float((gn * r).sum()) + float(gz.sum())
    grads = {name: rel * m for name, m in (("x", m_x), ("w", m_w), ("r", m_r), ("b", m_b))}
    return tol_n, tol_z, grads


# --------------------------------------------------------------------------- the cases
def _case(b, c, d, *, bias=False, neg=False, minus_one=False, seed=0):
    """Inputs of one call in float64 on the device: features (unit rows unless a bias
    makes it the plain softmax), centres, row scale, labels, optional bias / modulation."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=F64)
    w = torch.randn(c, d, generator=g, dtype=F64)
    labels = torch.randint(0, c, (b,), generator=g)
    if minus_one:
        labels[::3] = -1  # rows of a Partial FC shard with their target elsewhere
    normalize = not bias
    xn = F.normalize(x, dim=1) if normalize else x
    scale = torch.ones(b, dtype=F64) if bias else torch.rand(b, generator=g, dtype=F64) * 40 + 8
    kw = {"normalize": normalize}
    if bias:
        kw["bias"] = torch.randn(c, generator=g, dtype=F64)
    if neg:
        kw["neg_threshold"] = torch.rand(b, generator=g, dtype=F64) * 0.6 - 0.3
        kw["neg_t"] = 0.4
    up = torch.randn(2, b, generator=g, dtype=F64)  # the incoming gradients of N and z_y
    dev = {k: v.to(DEVICE) if torch.is_tensor(v) else v for k, v in kw.items()}
    return xn.to(DEVICE), w.to(DEVICE), scale.to(DEVICE), labels.to(DEVICE), dev, up.to(DEVICE)


def _run(path, xn, w, scale, labels, kw, up, dtype, need=("x", "w", "r", "b")):
    """(N, z_y) and the gradients of sum(up[0] N + up[1] z_y) with respect to the inputs
    named in ``need`` (those present), all as float64."""
    leaves = {"x": xn, "w": w, "r": scale}
    if "bias" in kw:
        leaves["b"] = kw["bias"]
    # half precision: the features and centres; the per-row and per-class numbers in float32
    small = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    leaves = {k: t.detach().to(dtype if k in "xw" else small).clone() for k, t in leaves.items()}
    for name, tensor in leaves.items():
        tensor.requires_grad_(name in need)
    args = dict(kw)
    if "bias" in kw:
        args["bias"] = leaves["b"]
    if "neg_threshold" in kw:
        args["neg_threshold"] = kw["neg_threshold"].to(small)
    lse, z_y = fused_margin_terms(leaves["x"], leaves["w"], leaves["r"], labels, path=path, **args)
    finite = torch.isfinite(lse)
    total = (torch.where(finite, lse, 0.0) * up[0]).sum() + (z_y * up[1]).sum()
    wanted = [name for name in leaves if leaves[name].requires_grad]
    grads = torch.autograd.grad(total, [leaves[name] for name in wanted]) if wanted else ()
    return lse.double(), z_y.double(), {k: g.double() for k, g in zip(wanted, grads, strict=True)}


def _check(got, ref, bounds, factor=1.0):
    """|got - ref| within factor x the bounds, entry by entry for N and z_y."""
    (lse, z_y, grads), (lse_r, z_r, grads_r) = got, ref
    tol_n, tol_z, tol_g = bounds
    inf = torch.isinf(lse_r)
    assert torch.equal(torch.isinf(lse), inf), "N = -inf exactly where a row has no non-target"
    diff_n = torch.where(inf, 0.0, lse - lse_r).abs().cpu()
    assert (diff_n <= factor * tol_n).all(), (diff_n.max(), tol_n.min())
    assert ((z_y - z_r).abs().cpu() <= factor * tol_z).all()
    assert grads.keys() == grads_r.keys()
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
        err = float((g - grads_r[name]).abs().max())
        assert err <= factor * tol_g[name], (name, err, tol_g[name])


def _bounds_for(dtype, xn, w, scale, kw, up, ref):
    return _bounds(
        dtype, xn, w, scale, kw.get("bias"), kw.get("neg_t") if "neg_threshold" in kw else None,
        kw["normalize"], up[0], up[1], ref[0],
    )  # fmt: skip


SHAPES = [  # (B, C, D): one class (nothing left beside the target), edges of every tile size
    (1, 1, 3),
    (3, 1, 5),
    (5, 37, 20),
    (17, 40, 33),
]
CONFIGS = {
    "cosine": {},
    "bias": {"bias": True},
    "modulated": {"neg": True},
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_equals_torch_path(shape, config):
    """float64 in, float64 arithmetic: N, z_y and every gradient as the PyTorch path's, to
    twice the float64 bound; labels -1 in every case with more than one row."""
    xn, w, scale, labels, kw, up = _case(*shape, minus_one=shape[0] > 1, **CONFIGS[config])
    if shape == (3, 1, 5):
        labels = torch.tensor([0, -1, 0], device=DEVICE)  # -1: N over the one class
    ref = _run("torch", xn, w, scale, labels, kw, up, F64)
    got = _run("triton", xn, w, scale, labels, kw, up, F64)
    _check(got, ref, _bounds_for(F64, xn, w, scale, kw, up, ref), factor=2.0)


@pytest.mark.parametrize("need", [("x",), ("w",), ("r",)], ids=str)
def test_gradients_of_one_input_at_a_time(need):
    xn, w, scale, labels, kw, up = _case(5, 37, 20, neg=True, minus_one=True, seed=3)
    ref = _run("torch", xn, w, scale, labels, kw, up, F64, need)
    got = _run("triton", xn, w, scale, labels, kw, up, F64, need)
    assert got[2].keys() == set(need)
    _check(got, ref, _bounds_for(F64, xn, w, scale, kw, up, ref), factor=2.0)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 40, 33)], ids=str)
def test_float32_within_the_bound_of_the_float64_result(shape, config):
    """float32 in: the kernel, and the PyTorch path as a check of the bound itself, within
    the float32 bound of the float64 result."""
    xn, w, scale, labels, kw, up = _case(*shape, minus_one=True, seed=1, **CONFIGS[config])
    ref = _run("torch", xn, w, scale, labels, kw, up, F64)
    bounds = _bounds_for(torch.float32, xn, w, scale, kw, up, ref)
    _check(_run("torch", xn, w, scale, labels, kw, up, torch.float32), ref, bounds)
    _check(_run("triton", xn, w, scale, labels, kw, up, torch.float32), ref, bounds)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("config", ["cosine", "modulated"])
def test_half_precision_inputs_accumulate_in_float32(dtype, config):
    """bfloat16 / float16 features and centres: N and z_y come back in float32, within the
    float32 bound (plus bfloat16's eps on the gradients) of float64 on the same numbers."""
    xn, w, scale, labels, kw, up = _case(17, 40, 33, minus_one=True, seed=2, **CONFIGS[config])
    xn, w = xn.to(dtype).double(), w.to(dtype).double()  # exactly representable in dtype
    ref = _run("torch", xn, w, scale, labels, kw, up, F64)
    lse, z_y = fused_margin_terms(xn.to(dtype), w.to(dtype), scale, labels, path="triton", **kw)
    assert lse.dtype == z_y.dtype == torch.float32
    got = _run("triton", xn, w, scale, labels, kw, up, dtype)
    _check(got, ref, _bounds_for(dtype, xn, w, scale, kw, up, ref))


def test_rows_on_and_opposite_centres():
    """cos = +1 with the target, cos = +1 with a non-target (the hardest negative), cos = -1
    with every other centre: finite, and as the PyTorch path."""
    xn, w, scale, labels, kw, up = _case(4, 19, 16, neg=True, seed=4)
    w = w.clone()
    w[1] = -w[0]  # two opposite centres
    xn = F.normalize(torch.stack([w[0], w[1], w[0], w[2] * 3.0]), dim=1)
    labels = torch.tensor([0, 1, 5, 2], device=DEVICE)  # row 2 sits on non-target centre 0
    ref = _run("torch", xn, w, scale, labels, kw, up, F64)
    got = _run("triton", xn, w, scale, labels, kw, up, F64)
    _check(got, ref, _bounds_for(F64, xn, w, scale, kw, up, ref), factor=2.0)
    bounds = _bounds_for(torch.float32, xn, w, scale, kw, up, ref)
    _check(_run("triton", xn, w, scale, labels, kw, up, torch.float32), ref, bounds)


def test_chunked_logsumexp_of_a_shard():
    """The Partial FC shard's call (target logits in, labels -1 for other shards' rows)."""
    xn, w, scale, labels, kw, _ = _case(6, 21, 12, minus_one=True, seed=5)
    target = torch.randn(6, dtype=F64, device=DEVICE) * 10
    ref = chunked_logsumexp(xn, w, scale, target, labels, path="torch", **kw)
    got = chunked_logsumexp(xn, w, scale, target, labels, path="triton", **kw)
    tol_n = _bounds_for(F64, xn, w, scale, kw, torch.ones(2, 6, dtype=F64), (ref,))[0]
    assert ((got - ref).abs().cpu() <= 2 * tol_n).all()


# --------------------------------------------------------------------------- real heads
def _upstream(head, x, y):
    """The incoming gradients of N and z_y in head.loss (float64, from the PyTorch path)."""
    with torch.no_grad():
        shard = head.local_shard(x.detach().to(head.compute_dtype(x)), y)
        norms, xn, bias = shard.norms, shard.xn, shard.bias
        scale = head.row_scale(norms)
        neg = head.negative_modulation(shard.cos_y, norms)
        kw = {} if neg is None else {"neg_threshold": neg[0], "neg_t": neg[1]}
        lse, z_y = fused_margin_terms(
            xn, shard.weight, scale, y, bias=bias, normalize=head.normalize, **kw
        )
    lse, z_y = lse.requires_grad_(True), z_y.requires_grad_(True)
    target = scale * head.target(z_y, norms)
    loss = (torch.logaddexp(target, lse) - target).mean()
    grad_n, grad_z = torch.autograd.grad(loss, [lse, z_y])
    t = None if neg is None else neg[1]
    return xn, scale, bias, t, grad_n, grad_z, lse.detach()


@pytest.mark.parametrize("name", ["arcface", "cosface", "curricularface", "softmax"])
def test_head_loss_through_the_kernel(name):
    """head.loss(path="triton") against head.loss(path="torch"), float64 and float32: the
    margin code is the head's own on both paths."""
    torch.manual_seed(0)
    b, d, c = 9, 24, 45
    for dtype in (F64, torch.float32):
        head = marginface.create_head(name, d, c).to(DEVICE, dtype).eval()
        if name == "curricularface":
            head.t.fill_(0.3)  # hard negatives modulated by c (t + c)
        if name == "softmax":
            with torch.no_grad():
                head.bias.normal_()
        g = torch.Generator().manual_seed(1)
        x = (torch.randn(b, d, generator=g, dtype=dtype) * 3).to(DEVICE).requires_grad_(True)
        y = torch.randint(0, c, (b,), generator=g).to(DEVICE)
        params = [x, *head.parameters()]
        out = {}
        for path in ("torch", "triton"):
            loss = head.loss(x, y, path=path)
            out[path] = (loss.detach().double(), torch.autograd.grad(loss, params))
        x64 = x.detach().double()
        head64 = head.double()
        xn, scale, bias, t, grad_n, grad_z, lse = _upstream(head64, x64, y)
        tol_n, tol_z, tol = _bounds(dtype, xn, head64.weight, scale, bias, t, head.normalize,
                                    grad_n, grad_z, lse)  # fmt: skip
        factor = 2.0  # both paths err
        loss_t, grads_t = out["triton"]
        loss_r, grads_r = out["torch"]
        # first order through N and z_y, plus the roundings of the mean of B terms of
        # magnitude up to |N| + 2 s
        eps = torch.finfo(dtype).eps
        through = float((grad_n.abs().cpu() * tol_n + grad_z.abs().cpu() * tol_z).sum())
        rounding = (b + 8) * eps * float(lse.abs().max() + 2 * scale.max())
        assert abs(float(loss_t - loss_r)) <= factor * (through + rounding)
        # raw features: through x / |x| (|J| <= sqrt(D) / |x| entrywise) for cosine heads
        jac = math.sqrt(d) / float(x64.norm(dim=1).min()) if head.normalize else 1.0
        tols = [jac * tol["x"], tol["w"]] + ([tol["b"]] if name == "softmax" else [])
        for a, r_, bound in zip(grads_t, grads_r, tols, strict=True):
            err = float((a.double() - r_.double()).abs().max())
            assert err <= factor * bound, (name, dtype, err, bound)


# --------------------------------------------------------------------------- the choice
def test_choose_path_is_the_one_rule():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_path(cpu) == "torch"  # the CPU default stays the chunked PyTorch path
    assert choose_path(cuda, torch.float32) == "torch"  # the kernel is opt-in (environment)


def test_auto_takes_the_kernel_where_it_can_when_opted_in(monkeypatch):
    monkeypatch.setenv(PATH_ENV, "triton")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_path(cpu) == "torch"
    assert choose_path(cuda, torch.float32) == "triton"
    assert choose_path(cuda, torch.bfloat16) == "triton"
    assert choose_path(cuda, F64) == "torch"
    assert choose_path(cuda, torch.float32, subcenters=3) == "torch"
    assert choose_path(cuda, path="torch") == "torch"
    if triton_path.INTERPRETED:
        assert choose_path(cpu, path="triton") == "triton"
    else:  # compiled kernels take CUDA tensors only
        with pytest.raises(ValueError, match="path='triton' runs on CUDA tensors"):
            choose_path(cpu, path="triton")
    with pytest.raises(ValueError, match="path must be one of auto, torch, triton; got 'cuda'"):
        choose_path(cpu, path="cuda")
    with pytest.raises(ValueError, match="subcenters=3"):
        choose_path(cuda, subcenters=3, path="triton")
    with pytest.raises(ValueError, match="int64"):
        choose_path(cuda, torch.int64, path="triton")


def test_environment_switch(monkeypatch):
    monkeypatch.setenv(PATH_ENV, "torch")
    assert choose_path("cuda", torch.float32) == "torch"
    monkeypatch.setenv(PATH_ENV, "fast")
    with pytest.raises(ValueError, match=f"{PATH_ENV} must be 'auto', 'torch' or 'triton'"):
        choose_path("cuda", torch.float32)


def test_subcentre_heads_take_the_torch_path_or_say_why():
    head = marginface.create_head("subcenter_arcface", 8, 5).to(DEVICE)
    x, y = torch.randn(4, 8, device=DEVICE), torch.tensor([0, 1, 2, 3], device=DEVICE)
    assert torch.isfinite(head.loss(x, y))  # auto
    with pytest.raises(ValueError, match="sub-centres"):
        head.loss(x, y, path="triton")


def test_works_without_triton(tmp_path):
    """The package imports and trains its heads with triton unimportable; asking for the
    kernel then says what is missing."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, marginface\n"
        "from marginface.heads.engine import choose_path\n"
        "head = marginface.create_head('arcface', 8, 5)\n"
        "x, y = torch.randn(4, 8, requires_grad=True), torch.tensor([0, 1, 2, 3])\n"
        "head.loss(x, y).backward()\n"
        "assert choose_path('cuda') == 'torch'\n"
        "try:\n"
        "    head.loss(x, y, path='triton')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "path='triton' needs the triton package" in out.stdout
