"""UniFace: the unified cross-entropy loss with its shared learnable bias."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import marginface
from _support.heads import (
    batch,
    check_bf16_autocast,
    check_defaults_and_roundtrip,
    check_edge_cases,
    check_fused_equals_dense,
    cosines,
    make,
)


def hand_loss(x, w, y, b, s=64.0, m=0.4, lam=1.0, clamp=False):
    """CVI-SZU/UniFace Unified_Cross_Entropy_Loss.forward, written out (float64)."""
    cos = cosines(x, w)
    p = s * (cos - m) - b
    n = s * cos - b
    if clamp:
        p, n = p.clamp(-s, s), n.clamp(-s, s)
    p_loss = torch.log(1 + torch.exp(-p))
    n_loss = torch.log(1 + torch.exp(n)) * lam
    one_hot = F.one_hot(y, cos.shape[1]).bool()
    return (one_hot * p_loss + (~one_hot) * n_loss).sum(dim=1).mean()


def test_defaults_and_bias_init():
    check_defaults_and_roundtrip("uniface", {"s": 64.0, "m": 0.4, "lamb": 1.0, "clamp": False})
    head = marginface.create_head("uniface", 8, 5000)
    assert math.isclose(float(head.bias.detach()), math.log(50000.0), rel_tol=1e-6)


@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_loss_logits_gradients_match_reference(clamp, lam):
    head = make("uniface", lamb=lam, clamp=clamp)
    x, y = batch(12, 7, 8, seed=2)
    x[:3] = -head.weight.detach()[y[:3]] + 0.1 * x[:3]  # hard positives: the clamp matters
    w, b = head.weight.detach(), float(head.bias.detach())
    cos = cosines(x, w)
    want_logits = (64.0 * cos - b).scatter(
        1, y[:, None], 64.0 * (cos.gather(1, y[:, None]) - 0.4) - b
    )
    assert torch.allclose(head(x, y), want_logits)
    assert torch.allclose(head(x), 64.0 * cos - b)
    x1 = x.clone().requires_grad_(True)
    loss = head.loss(x1, y)
    loss.backward()
    x2 = x.clone().requires_grad_(True)
    w2 = w.clone().requires_grad_(True)
    b2 = head.bias.detach().clone().requires_grad_(True)
    want = hand_loss(x2, w2, y, b2, lam=lam, clamp=clamp)
    want.backward()
    assert math.isclose(float(loss.detach()), float(want.detach()), rel_tol=1e-11)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-10)
    assert torch.allclose(head.weight.grad, w2.grad, atol=1e-10)
    assert torch.allclose(head.bias.grad, b2.grad, atol=1e-10)


@pytest.mark.parametrize("clamp", [False, True])
def test_chunked_equals_dense_and_gradcheck(clamp):
    head = make("uniface", clamp=clamp)
    x, y = batch(12, 7, 8)
    dense = lambda h, xx, yy: h.loss_from_logits(h(xx, yy), yy)  # noqa: E731
    check_fused_equals_dense(head, x, y, reference_loss=dense, chunk_size=2)
    check_fused_equals_dense(
        head,
        x,
        y,
        reference_loss=lambda h, xx, yy: hand_loss(xx, h.weight, yy, h.bias, clamp=clamp),
    )
    small = make("uniface", 6, 4, s=3.0, clamp=clamp)
    xs, ys = batch(6, 4, 4)
    xs.requires_grad_(True)
    fn = lambda a, w, b: small.loss(a, ys, chunk_size=3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (xs, small.weight, small.bias))


def test_training_steps_and_restore():
    head = make("uniface")
    opt = torch.optim.SGD(head.parameters(), lr=0.01)
    x, y = batch(12, 7, 8)
    first = float(head.loss(x, y).detach())
    for _ in range(5):
        opt.zero_grad()
        head.loss(x, y).backward()
        opt.step()
    assert float(head.loss(x, y).detach()) < first
    other = make("uniface")
    other.load_state_dict(head.state_dict())
    assert torch.equal(other.bias, head.bias) and torch.equal(other(x, y), head(x, y))


def test_edges_and_bf16():
    check_edge_cases(make("uniface"))
    check_bf16_autocast("uniface")
