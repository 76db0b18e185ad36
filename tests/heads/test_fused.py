"""The chunked fused loss equals the unfused one and never holds the (B, C) logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import marginface
from marginface.heads.engine import auto_chunk_size, chunked_logsumexp

HEADS = ["softmax", "normface", "cosface", "arcface", "combined", "sphereface"]


def _data(b=64, d=32, c=1000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=dtype)
    y = torch.randint(0, c, (b,), generator=g)
    return x, y


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("grads", ["both", "x", "w"])
def test_fused_equals_unfused_float32(name, grads):
    torch.manual_seed(0)
    head = marginface.create_head(name, 32, 1000).eval()
    x, y = _data()
    x.requires_grad_(grads in ("both", "x"))
    head.weight.requires_grad_(grads in ("both", "w"))
    wanted = [t for t in (x, head.weight) if t.requires_grad]
    ref = F.cross_entropy(head(x, y), y)
    ref_grads = torch.autograd.grad(ref, wanted)
    for chunk in (37, 256, None):
        loss = head.loss(x, y, chunk_size=chunk)
        got = torch.autograd.grad(loss, wanted)
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
        for a, b in zip(got, ref_grads, strict=True):
            # float32: 1e-5 relative to the gradient's scale (entries near zero cancel)
            assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max())


def test_fused_float64_exact_to_1e10_on_larger_problem():
    torch.manual_seed(3)
    head = marginface.create_head("arcface", 16, 3000).double().eval()
    x, y = _data(b=32, d=16, c=3000, dtype=torch.float64)
    x.requires_grad_(True)
    ref = F.cross_entropy(head(x, y), y)
    rg = torch.autograd.grad(ref, [x, head.weight])
    loss = head.loss(x, y, memory_budget=20_000)
    g = torch.autograd.grad(loss, [x, head.weight])
    assert abs(float((loss - ref).detach())) < 1e-10
    for a, b in zip(g, rg, strict=True):
        assert float((a - b).abs().max()) < 1e-10


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor any operator produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("name", HEADS)
def test_fused_never_materialises_b_by_c(name):
    b, d, c = 64, 4, 4000  # B x C = 256,000 elements; the weight and its grad are 16,000
    head = marginface.create_head(name, d, c)
    x, y = _data(b=b, d=d, c=c)
    x.requires_grad_(True)
    with _LargestOutput() as mode:
        head.loss(x, y, chunk_size=200).backward()
    assert mode.largest <= max(b * 200, c * d)  # a chunk of scores, or the weight (grad)
    with _LargestOutput() as dense:
        F.cross_entropy(head(x, y), y).backward()
    assert dense.largest >= b * c  # the check does see a dense path


def test_auto_chunk_size_follows_budget():
    assert auto_chunk_size(512, 100_000) == 4096  # the default 24 MiB budget at B = 512
    small = auto_chunk_size(512, 100_000, memory_budget=2**20)
    big = auto_chunk_size(512, 100_000, memory_budget=2**26)
    assert small < big <= 100_000
    assert auto_chunk_size(8, 10) == 10
    with pytest.raises(ValueError, match="memory_budget"):
        auto_chunk_size(8, 10, memory_budget=0)


def _dense_lse(xn, w, scale, target, labels, k=1, bias=None, thr=None, t=0.0):
    wn = F.normalize(w, dim=1)
    z = xn @ wn.t()
    if bias is not None:
        z = z + bias
    if k > 1:
        z = z.view(z.shape[0], -1, k).amax(dim=2)
    if thr is not None:
        z = torch.where(z > thr[:, None], z * (t + z), z)
    logits = z * scale[:, None]
    has = labels >= 0
    rows = has.nonzero().squeeze(1)
    logits = logits.index_put((rows, labels[rows]), target[rows])
    return torch.logsumexp(logits, dim=1)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("modulate", [False, True])
def test_chunked_logsumexp_blocks_subcentres_and_negatives(k, modulate):
    """Labels -1 (no target in this block of classes), sub-centres and hard-negative
    modulation: values and gradients of every input against a dense float64 version."""
    torch.manual_seed(5)
    b, d, c = 10, 6, 23
    xn = F.normalize(torch.randn(b, d, dtype=torch.float64), dim=1).requires_grad_(True)
    w = torch.randn(c * k, d, dtype=torch.float64, requires_grad=True)
    scale = (torch.rand(b, dtype=torch.float64) * 5 + 1).requires_grad_(True)
    target = torch.randn(b, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, c, (b,))
    labels[::3] = -1
    thr = torch.rand(b, dtype=torch.float64) * 0.5 if modulate else None
    t = 0.3 if modulate else 0.0
    args = (xn, w, scale, target)
    got = chunked_logsumexp(*args, labels, neg_threshold=thr, neg_t=t, subcenters=k, chunk_size=4)
    ref = _dense_lse(*args, labels, k=k, thr=thr, t=t)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    weights = torch.randn(b, dtype=torch.float64)
    g1 = torch.autograd.grad((got * weights).sum(), args)
    g2 = torch.autograd.grad((ref * weights).sum(), args)
    for a, bb in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, bb, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda *a: chunked_logsumexp(
            *a, labels, neg_threshold=thr, neg_t=t, subcenters=k, chunk_size=4
        ),
        args,
    )
