"""Every head against its formula written out by hand in float64 (see heads_reference.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import marginface
from _support.heads_reference import reference_logits

CASES = [
    ("softmax", {}),
    ("softmax", {"bias": False}),
    ("normface", {"s": 30.0}),
    ("cosface", {}),
    ("cosface", {"s": 30.0, "m": 0.4}),
    ("arcface", {}),
    ("arcface", {"s": 30.0, "m": 0.5, "easy_margin": True}),
    ("arcface", {"m": 1.2}),
    ("combined", {}),
    ("combined", {"m1": 1.0, "m2": 0.3, "m3": 0.2}),
    ("combined", {"m1": 1.35, "m2": 0.25, "m3": 0.1}),
    ("combined", {"m1": 2.0, "m2": 0.0, "m3": 0.0}),
    ("combined", {"m1": 0.8, "m2": 0.6, "m3": 0.05}),
    ("sphereface", {}),
    ("sphereface", {"m": 2, "lambda_min": 0.5}),
    ("sphereface", {"m": 3}),
]


def _setup(name: str, hp: dict, b: int = 12, d: int = 6, c: int = 9, seed: int = 0):
    torch.manual_seed(seed)
    head = marginface.create_head(name, d, c, **hp).double()
    if getattr(head, "bias", None) is not None:
        with torch.no_grad():
            head.bias.normal_()
    x = torch.randn(b, d, dtype=torch.float64) * 3.0
    y = torch.randint(0, c, (b,))
    # spread the targets over the whole angle range, including theta + m > pi
    with torch.no_grad():
        head.weight[y[:3]] = -x[:3] + 0.1 * torch.randn(3, d, dtype=torch.float64)
    return head, x, y


def _ref(head, name, hp, x, y, iteration=0):
    bias = getattr(head, "bias", None)
    return reference_logits(
        name,
        x,
        head.weight.detach(),
        y,
        hp,
        bias=None if bias is None else bias.detach(),
        iteration=iteration,
    )


@pytest.mark.parametrize(("name", "hp"), CASES, ids=lambda v: str(v))
def test_forward_matches_hand_formula(name, hp):
    head, x, y = _setup(name, hp)
    head.eval()
    logits = head(x, y)
    assert logits.dtype == torch.float64 and logits.shape == (12, 9)
    torch.testing.assert_close(logits, _ref(head, name, hp, x, y), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(head(x), _ref(head, name, hp, x, None), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("fused", [True, False])
def test_loss_and_gradients_match_hand_formula(name, hp, fused):
    head, x, y = _setup(name, hp, seed=1)
    head.eval()
    x.requires_grad_(True)
    loss = head.loss(x, y, fused=fused, chunk_size=4)
    gx, gw = torch.autograd.grad(loss, [x, head.weight])

    x2 = x.detach().clone().requires_grad_(True)
    w2 = head.weight.detach().clone().requires_grad_(True)
    bias = getattr(head, "bias", None)
    ref = F.cross_entropy(
        reference_logits(name, x2, w2, y, hp, bias=None if bias is None else bias.detach()), y
    )
    rgx, rgw = torch.autograd.grad(ref, [x2, w2])
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx, rgx, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gw, rgw, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(("name", "hp"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck(name, hp, fused):
    """The loss (fused: through its custom backward) against finite differences."""
    head, x, y = _setup(name, hp, b=5, d=4, c=6, seed=2)
    head.eval()
    x = x.detach().requires_grad_(True)
    w = head.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda xx, ww: _loss_with_weight(head, xx, ww, y, fused), (x, w), eps=1e-6, atol=1e-6
    )


def _loss_with_weight(head, x, w, y, fused):
    """head.loss with ``w`` in place of the head's weight parameter (for gradcheck)."""
    saved = head.weight
    try:
        del head.weight
        head.weight = w
        return head.loss(x, y, fused=fused, chunk_size=4)
    finally:
        del head.weight
        head.weight = saved
