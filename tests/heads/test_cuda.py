"""The heads on a CUDA device (skipped where there is none): exactness, autocast, edge cases."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

import marginface
from marginface.compat import AddMarginProduct, ArcMarginProduct, SphereProduct

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
HEADS = ["softmax", "normface", "cosface", "arcface", "combined", "sphereface", "curricularface"]


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_equals_dense_on_cuda(name, dtype):
    torch.manual_seed(0)
    head = marginface.create_head(name, 32, 5000).to("cuda", dtype)
    x = torch.randn(64, 32, device="cuda", dtype=dtype, requires_grad=True)
    y = torch.randint(0, 5000, (64,), device="cuda")
    head.eval()
    ref = F.cross_entropy(head(x, y), y)
    rg = torch.autograd.grad(ref, [x, head.weight])
    loss = head.loss(x, y, chunk_size=700)
    g = torch.autograd.grad(loss, [x, head.weight])
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert abs(float((loss - ref).detach())) <= tol * max(1.0, abs(float(ref.detach())))
    for a, b in zip(g, rg, strict=True):
        assert float((a - b).abs().max()) <= tol * float(b.abs().max())


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("amp", [torch.float16, torch.bfloat16])
def test_autocast_on_cuda_computes_in_float32(name, amp):
    head = marginface.create_head(name, 16, 100).cuda()
    y = torch.arange(8, device="cuda")
    x = (head.weight.detach()[y] * 3).requires_grad_(True)  # on the class centres: cos = 1
    with torch.autocast("cuda", dtype=amp):
        feats = torch.nn.functional.linear(x, torch.eye(16, device="cuda"))  # half precision
        logits = head(feats, y)
        loss = head.loss(feats, y)
    assert feats.dtype == amp and logits.dtype == torch.float32 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert torch.isfinite(head.weight.grad).all()


def test_seed_classes_run_on_cuda():
    x, y = torch.randn(8, 10, device="cuda"), torch.randint(0, 11, (8,), device="cuda")
    for cls in (SphereProduct, AddMarginProduct, ArcMarginProduct):
        out = cls(10, 11).cuda()(x, y)
        assert out.shape == (8, 11) and out.is_cuda and torch.isfinite(out).all()


def test_report_speed_and_memory_on_cuda():
    """Not a target: prints fused vs plain at B=512, D=512, C=100,000 on this GPU."""
    b, d, c = 512, 512, 100_000
    x = torch.randn(b, d, device="cuda", requires_grad=True)
    y = torch.randint(0, c, (b,), device="cuda")
    head = marginface.create_head("arcface", d, c).cuda()

    def plain():
        F.cross_entropy(F.linear(F.normalize(x), F.normalize(head.weight)) * 64, y).backward()

    def fused():
        head.loss(x, y).backward()

    for name, fn in (("plain", plain), ("fused", fused)):
        fn()
        x.grad = head.weight.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
            x.grad = head.weight.grad = None
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 100
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        print(f"\n{name}: {ms:.2f} ms per forward+backward, peak growth {peak:.0f} MiB")
