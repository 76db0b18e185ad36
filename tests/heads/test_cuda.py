"""The heads on a CUDA device (skipped where there is none): exactness, autocast, edge cases."""

from __future__ import annotations

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
