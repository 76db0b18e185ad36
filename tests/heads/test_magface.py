"""MagFace: magnitude-aware margin, regulariser in head.loss, the lambda_g bound."""

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
from marginface.heads import magface_lambda_bound

L_A, U_A, L_M, U_M, S, LG = 10.0, 110.0, 0.45, 0.8, 64.0, 35.0


def hand_logits(x, w, y, easy=True):
    """IrvingMeng/MagFace MagLinear + MagLoss output, written out (float64)."""
    a = x.norm(dim=1).clamp(L_A, U_A)
    m = (U_M - L_M) / (U_A - L_A) * (a - L_A) + L_M
    cos = cosines(x, w).clamp(-1, 1)
    out = cos.clone()
    for i, j in enumerate(y.tolist()):
        c = cos[i, j]
        phi = torch.cos(torch.acos(c) + m[i])
        if easy:
            out[i, j] = phi if float(c.detach()) > 0 else c
        else:
            ok = float(c.detach()) > math.cos(math.pi - float(m[i].detach()))
            out[i, j] = phi if ok else c - torch.sin(m[i]) * m[i]
    return S * out


def hand_loss(x, w, y, easy=True):
    a = x.norm(dim=1).clamp(L_A, U_A)
    g = a / U_A**2 + 1 / a
    return F.cross_entropy(hand_logits(x, w, y, easy), y) + LG * g.mean()


def spread_batch(seed=1):
    x, y = batch(12, 7, 8, seed=seed)
    norms = torch.tensor([3.0, 10.0, 20.0, 45.0, 70.0, 100.0, 110.0, 150.0], dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True) * norms[:, None], y


def test_defaults_and_bound():
    check_defaults_and_roundtrip(
        "magface",
        {
            "s": 64.0,
            "l_a": 10.0,
            "u_a": 110.0,
            "l_m": 0.45,
            "u_m": 0.8,
            "lambda_g": 35.0,
            "easy_margin": True,
        },
    )
    k = (U_M - L_M) / (U_A - L_A)
    bound = S * k * U_A**2 * L_A**2 / (U_A**2 - L_A**2)
    assert math.isclose(magface_lambda_bound(S, L_A, U_A, L_M, U_M), bound)
    assert math.isclose(bound, 22.5867, abs_tol=1e-4)
    with pytest.raises(ValueError, match=r"lambda_g=20.* below .*22\.58"):
        marginface.create_head("magface", 8, 5, lambda_g=20.0)
    marginface.create_head("magface", 8, 5, lambda_g=22.6)
    # the bound scales with s
    with pytest.raises(ValueError, match="below"):
        marginface.create_head("magface", 8, 5, s=128.0, lambda_g=35.0)


@pytest.mark.parametrize("easy", [True, False])
def test_forward_and_loss_match_formula(easy):
    head = make("magface", easy_margin=easy)
    x, y = spread_batch()
    assert torch.allclose(head(x, y), hand_logits(x, head.weight.detach(), y, easy), atol=1e-9)
    assert torch.allclose(head(x), S * cosines(x, head.weight.detach()))
    x1 = x.clone().requires_grad_(True)
    loss = head.loss(x1, y)
    loss.backward()
    x2 = x.clone().requires_grad_(True)
    w2 = head.weight.detach().clone().requires_grad_(True)
    want = hand_loss(x2, w2, y, easy)
    want.backward()
    assert math.isclose(float(loss.detach()), float(want.detach()), rel_tol=1e-12)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-10)
    assert torch.allclose(head.weight.grad, w2.grad, atol=1e-10)
    # the norm gets a gradient inside [l_a, u_a] and none outside
    radial = (x1.grad * x / x.norm(dim=1, keepdim=True)).sum(1)
    assert radial[0].abs() < 1e-12 and radial[7].abs() < 1e-12 and radial[3].abs() > 1e-6


def test_fused_equals_dense_and_gradcheck():
    head = make("magface")
    x, y = spread_batch(2)

    def dense(h, xx, yy):
        a = xx.norm(dim=1).clamp(L_A, U_A)
        return F.cross_entropy(h(xx, yy), yy) + LG * (a / U_A**2 + 1 / a).mean()

    check_fused_equals_dense(head, x, y, reference_loss=dense)
    assert torch.allclose(head.loss(x, y, fused=False), dense(head, x, y))
    small = make("magface", 6, 4, easy_margin=False)
    xs, ys = batch(6, 4, 4, scale=12.0)
    xs.requires_grad_(True)
    fn = lambda a, b: small.loss(a, ys, chunk_size=3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (xs, small.weight))


def test_regulariser_optimum_is_unique_inside_the_range():
    head = make("magface")
    a = torch.linspace(L_A, U_A, 1001, dtype=torch.float64)
    g = head.regularizer(a)
    assert torch.all(g[1:] < g[:-1])  # g strictly decreasing on [l_a, u_a] (u_a^2 > a^2)
    assert torch.all(head.adaptive_margin(a)[1:] >= head.adaptive_margin(a)[:-1])


def test_edges_and_bf16():
    check_edge_cases(make("magface"))
    check_edge_cases(make("magface", easy_margin=False))
    check_bf16_autocast("magface")
