"""SphereFace-R (HFN): multiplicative margin in the value, the cosine's gradient (v0/v1/v2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from _support.heads import (
    batch,
    check_bf16_autocast,
    check_defaults_and_roundtrip,
    check_edge_cases,
    check_fused_equals_dense,
    cosines,
    make,
)

VERSIONS = ["v0", "v1", "v2"]


def hand_logits(version, x, w, y, s=60.0, m=1.4):
    """opensphere spherefacer.py get_d_theta + SphereFaceR_H, written out (clamps at pi)."""
    cos = cosines(x, w)
    with torch.no_grad():
        m_theta = torch.acos(cos.clamp(-1.0, 1.0))
        m_theta[torch.arange(len(y)), y] *= m
        if version == "v0":
            k = torch.floor(m_theta / math.pi)
            phi = (1.0 - 2.0 * torch.remainder(k, 2.0)) * torch.cos(m_theta) - 2.0 * k
        elif version == "v1":
            phi = torch.cos(m_theta.clamp(max=math.pi))
        else:
            phi = torch.cos(m_theta / m)
        d_theta = phi - cos
    return s * (cos + d_theta)


def test_defaults():
    check_defaults_and_roundtrip("sphereface_r", {"s": 60.0, "m": 1.4, "version": "v2"})


@pytest.mark.parametrize("version", VERSIONS)
def test_logits_loss_and_gradients_match_reference(version):
    head = make("sphereface_r", version=version)
    x, y = batch(12, 7, 8)
    x[:2] = -head.weight.detach()[y[:2]] + 0.2 * x[:2]  # m theta > pi for v0 / v1
    w = head.weight.detach()
    assert torch.allclose(head(x, y), hand_logits(version, x, w, y), atol=1e-10)
    assert torch.allclose(head(x), 60.0 * cosines(x, w))
    x1 = x.clone().requires_grad_(True)
    loss = head.loss(x1, y)
    loss.backward()
    x2 = x.clone().requires_grad_(True)
    w2 = w.clone().requires_grad_(True)
    want = F.cross_entropy(hand_logits(version, x2, w2, y), y)
    want.backward()
    assert math.isclose(float(loss.detach()), float(want.detach()), rel_tol=1e-11)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-10)
    assert torch.allclose(head.weight.grad, w2.grad, atol=1e-10)


def test_gradient_is_detached_to_the_cosine():
    """d loss / d logit_ij = p_ij - onehot, and d logit / d cos = s everywhere."""
    head = make("sphereface_r")
    x, y = batch(12, 7, 8)
    w = head.weight.detach().clone().requires_grad_(True)
    head.weight.data = w.detach()
    cos = cosines(x, w)
    p = torch.softmax(hand_logits("v2", x, w.detach(), y), dim=1) - F.one_hot(y, 7)
    surrogate = (60.0 * cos * p.detach()).sum() / len(y)
    (gw,) = torch.autograd.grad(surrogate, w)
    head.loss(x, y).backward()
    assert torch.allclose(head.weight.grad, gw, atol=1e-10)


@pytest.mark.parametrize("version", VERSIONS)
def test_chunked_equals_dense_gradcheck_edges(version):
    head = make("sphereface_r", version=version)
    x, y = batch(12, 7, 8)
    check_fused_equals_dense(head, x, y, chunk_size=2)
    check_fused_equals_dense(head, x, y, chunk_size=1)
    # gradcheck where the detached value is locally constant in the inputs' perturbation
    # would not hold (the value moves, the gradient ignores it) - check the identity instead:
    # the gradient equals that of s*cos weighted by the margin-bearing softmax (above).
    check_edge_cases(head)
    check_bf16_autocast("sphereface_r", version=version)


def test_bad_arguments():
    with pytest.raises(ValueError, match="version"):
        make("sphereface_r", version="v3")
    with pytest.raises(ValueError, match="m must be >= 1"):
        make("sphereface_r", m=0.5)
