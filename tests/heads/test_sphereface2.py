"""SphereFace2 (C/A/M): binary logits, bias initialisation, weighted softplus loss, chunking."""

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

VARIANTS = [("C", 0.4), ("A", 0.5), ("M", 1.7)]


def g(c, t=3.0):
    return 2.0 * ((c + 1.0) / 2.0) ** t - 1.0


def hand_bias(variant, m, c, r=40.0, lam=0.7, t=3.0):
    """opensphere sphereface2{c,a,m}.py's initial bias, written out."""
    z = lam / ((1.0 - lam) * (c - 1.0))
    if variant == "C":
        ay, ai = r * (2.0 * 0.5**t - 1.0 - m), r * (2.0 * 0.5**t - 1.0 + m)
    else:
        theta_y = math.pi / 2.0 + m if variant == "A" else m * math.pi / 2.0
        theta_y = min(math.pi, theta_y)
        ay, ai = r * (2.0 * ((math.cos(theta_y) + 1.0) / 2.0) ** t - 1.0), r * (2.0 * 0.5**t - 1.0)
    tmp = (1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai)
    return math.log(2.0 * z) - ai - math.log(1.0 - z + math.sqrt(tmp))


def hand_logits(variant, m, x, w, y, b, r=40.0, detach=True):
    """Logits as opensphere builds them: r * (cos + d_theta) + b, d_theta without gradient."""
    cos = cosines(x, w)
    one_hot = F.one_hot(y, cos.shape[1]).to(cos.dtype)

    def adjusted(c):
        if variant == "C":
            return g(c) - m * (2.0 * one_hot - 1.0)
        theta = torch.acos(c.clamp(-1.0, 1.0))
        if variant == "A":
            theta_m = theta + m * one_hot
        else:
            theta_m = theta * (1.0 + (m - 1.0) * one_hot)
        return g(torch.cos(theta_m.clamp(max=math.pi)))

    if detach:
        with torch.no_grad():
            d_theta = adjusted(cos) - cos
        return r * (cos + d_theta) + b
    return r * adjusted(cos) + b


def hand_loss(logits, y, r=40.0, lam=0.7, lw=50.0):
    """opensphere's loss: BCE with per-cell weights lw * C / r * (lam or 1 - lam), mean."""
    one_hot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    weight = lam * one_hot + (1.0 - lam) * (1.0 - one_hot)
    weight = lw * logits.shape[1] / r * weight
    return F.binary_cross_entropy_with_logits(logits, one_hot, weight=weight)


def test_defaults():
    check_defaults_and_roundtrip(
        "sphereface2",
        {
            "s": 40.0,
            "m": None,
            "lamb": 0.7,
            "t": 3.0,
            "variant": "C",
            "loss_weight": 50.0,
            "gradient_detach": True,
            "r": None,  # the scale's old name, an alias of s
        },
    )
    assert "r" not in marginface.create_head("sphereface2", 8, 5).hparams()
    old = marginface.create_head("sphereface2", 8, 5, r=30.0)  # the old keyword still works
    assert old.s == 30.0 and old.hparams()["s"] == 30.0
    with pytest.raises(ValueError, match="s or as its old name r"):
        marginface.create_head("sphereface2", 8, 5, s=20.0, r=30.0)
    for variant, m in VARIANTS:
        head = marginface.create_head("sphereface2", 8, 5, variant=variant)
        assert head.m == m and head.hparams()["m"] == m


@pytest.mark.parametrize(("variant", "m"), VARIANTS)
@pytest.mark.parametrize("detach", [True, False])
def test_logits_loss_and_gradients_match_reference(variant, m, detach):
    head = make("sphereface2", variant=variant, gradient_detach=detach)
    assert math.isclose(head.initial_bias(), hand_bias(variant, m, 7), rel_tol=1e-13)
    assert math.isclose(float(head.bias.detach()), hand_bias(variant, m, 7), rel_tol=1e-7)
    x, y = batch(12, 7, 8)
    w, b = head.weight.detach(), float(head.bias.detach())
    assert torch.allclose(head(x, y), hand_logits(variant, m, x, w, y, b, detach=detach))
    assert torch.allclose(head(x), 40.0 * g(cosines(x, w)) + b)
    x1 = x.clone().requires_grad_(True)
    loss = head.loss(x1, y)
    loss.backward()
    x2 = x.clone().requires_grad_(True)
    w2 = w.clone().requires_grad_(True)
    b2 = head.bias.detach().clone().requires_grad_(True)
    want = hand_loss(hand_logits(variant, m, x2, w2, y, b2, detach=detach), y)
    want.backward()
    assert math.isclose(float(loss.detach()), float(want.detach()), rel_tol=1e-11)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-10)
    assert torch.allclose(head.weight.grad, w2.grad, atol=1e-10)
    assert torch.allclose(head.bias.grad, b2.grad, atol=1e-10)


@pytest.mark.parametrize(("variant", "m"), VARIANTS)
def test_chunked_equals_dense_and_gradcheck(variant, m):
    head = make("sphereface2", variant=variant)
    x, y = batch(12, 7, 8)

    def dense(h, xx, yy):
        return hand_loss(h(xx, yy), yy)

    check_fused_equals_dense(head, x, y, reference_loss=dense, chunk_size=2)
    check_fused_equals_dense(head, x, y, reference_loss=dense, chunk_size=7)
    small = make("sphereface2", 6, 4, variant=variant, r=3.0, gradient_detach=False)
    xs, ys = batch(6, 4, 4)
    xs.requires_grad_(True)
    fn = lambda a, w, b: small.loss(a, ys, chunk_size=3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (xs, small.weight, small.bias))


def test_training_moves_the_bias_and_state_restores():
    head = make("sphereface2")
    opt = torch.optim.SGD(head.parameters(), lr=0.01)
    x, y = batch(12, 7, 8)
    first = float(head.loss(x, y).detach())
    for _ in range(5):
        opt.zero_grad()
        head.loss(x, y).backward()
        opt.step()
    assert float(head.loss(x, y).detach()) < first
    assert float(head.bias.detach()) != hand_bias("C", 0.4, 7)
    other = make("sphereface2")
    other.load_state_dict(head.state_dict())
    assert torch.equal(other(x, y), head(x, y))


@pytest.mark.parametrize(("variant", "m"), VARIANTS)
def test_edges_and_bf16(variant, m):
    check_edge_cases(make("sphereface2", variant=variant))
    check_edge_cases(make("sphereface2", variant=variant, gradient_detach=False))
    check_bf16_autocast("sphereface2", variant=variant)


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        make("sphereface2", variant="X")
    one = marginface.create_head("sphereface2", 8, 1)  # defined (C - 1 taken as 1)
    assert math.isclose(one.initial_bias(), hand_bias("C", 0.4, 2), rel_tol=1e-13)
    with pytest.raises(ValueError, match="lamb"):
        make("sphereface2", lamb=1.0)
