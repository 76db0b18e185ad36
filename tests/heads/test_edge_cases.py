"""Edge cases: cos = +-1, rounding past 1, theta + m > pi, autocast, empty and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import marginface
from marginface.heads._math import monotone_cos
from marginface.heads.sphereface import sphere_psi

HEADS = ["softmax", "normface", "cosface", "arcface", "combined", "sphereface"]
ALL_VARIANTS = [(n, {}) for n in HEADS] + [
    ("arcface", {"easy_margin": True}),
    ("combined", {"m1": 1.5, "m2": 0.2, "m3": 0.1}),
]


@pytest.mark.parametrize(("name", "hp"), ALL_VARIANTS, ids=str)
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_embedding_on_or_opposite_its_centre_is_finite(name, hp, sign, fused, dtype):
    torch.manual_seed(0)
    head = marginface.create_head(name, 8, 5, **hp).to(dtype)
    y = torch.tensor([0, 1, 2, 3])
    x = (sign * 2.5 * head.weight.detach()[y]).clone().requires_grad_(True)
    if head.normalize:
        cos = F.normalize(x.detach(), dim=1) @ F.normalize(head.weight.detach(), dim=1).t()
        assert torch.allclose(cos.gather(1, y[:, None]).abs(), torch.ones(4, 1, dtype=dtype))
    loss = head.loss(x, y, fused=fused)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize(("name", "hp"), ALL_VARIANTS, ids=str)
def test_cosines_rounded_past_one_stay_finite(name, hp):
    """Many random vectors equal to their centre up to scale: some cosines round above 1."""
    torch.manual_seed(1)
    head = marginface.create_head(name, 64, 300, **hp)
    y = torch.arange(300)
    x = (head.weight.detach() * torch.rand(300, 1) * 7).requires_grad_(True)
    logits = head(x, y)
    assert torch.isfinite(logits).all()
    head.loss(x, y).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_arcface_fallback_where_theta_plus_m_exceeds_pi():
    head = marginface.create_head("arcface", 2, 2, s=10.0, m=0.5).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    for theta in (math.pi - 0.4, math.pi - 0.1, math.pi):
        x = torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64)
        got = float(head(x, torch.tensor([0]))[0, 0].detach())
        c = math.cos(theta)
        assert got == pytest.approx(10.0 * (c - 0.5 * math.sin(0.5)), abs=1e-9)
    x = torch.tensor([[math.cos(1.0), math.sin(1.0)]], dtype=torch.float64)
    assert float(head(x, torch.tensor([0]))[0, 0].detach()) == pytest.approx(10 * math.cos(1.5))


@pytest.mark.parametrize("m1", [0.6, 1.3, 2.0, 3.5])
def test_combined_target_keeps_falling_with_theta(m1):
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    head = marginface.create_head("combined", 2, 2, m1=m1, m2=0.3, m3=0.1).double()
    target = head.margin(torch.cos(theta), torch.ones_like(theta))
    steps = target[1:] - target[:-1]
    assert (steps <= 1e-12).all(), "the target cosine must not rise with the angle"
    assert steps.abs().max() < 0.05, "and it must be continuous"
    expected0 = math.cos(0.3) - 0.1
    assert float(target[0]) == pytest.approx(expected0, abs=1e-12)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_sphere_psi_monotone_from_one_to_minus_2m_plus_1(m):
    theta = torch.linspace(0, math.pi, 3001, dtype=torch.float64)
    p = sphere_psi(torch.cos(theta), m)
    assert float(p[0]) == pytest.approx(1.0)
    assert float(p[-1]) == pytest.approx(-(2 * m - 1), abs=1e-9)
    assert ((p[1:] - p[:-1]) <= 1e-9).all()
    torch.testing.assert_close(sphere_psi(torch.cos(theta), m), monotone_cos(m * theta))


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_and_half_inputs_compute_in_float32(name, dtype):
    torch.manual_seed(2)
    head = marginface.create_head(name, 16, 50)
    x = torch.randn(8, 16).to(dtype)
    y = torch.randint(0, 50, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x, y)
        loss = head.loss(x, y)
        plain = head(x)
    assert logits.dtype == torch.float32 and plain.dtype == torch.float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    head.eval()
    torch.testing.assert_close(head(x, y), head(x.float(), y))
    torch.testing.assert_close(head.loss(x, y), F.cross_entropy(head(x.float(), y), y))


def test_empty_batch():
    head = marginface.create_head("arcface", 8, 5)
    x = torch.zeros(0, 8)
    y = torch.zeros(0, dtype=torch.long)
    assert head(x, y).shape == (0, 5)
    assert head(x).shape == (0, 5)
    with pytest.raises(ValueError, match="empty batch"):
        head.loss(x, y)


@pytest.mark.parametrize(
    ("x", "y", "pattern"),
    [
        (torch.randn(4, 7), torch.tensor([0, 1, 2, 3]), r"shape \(B, 8\), got \(4, 7\)"),
        (torch.randn(4), None, r"shape \(B, 8\), got \(4,\)"),
        (torch.randn(4, 8), torch.tensor([0, 1, 2]), r"shape \(4,\).*got \(3,\)"),
        (torch.randn(4, 8), torch.tensor([[0, 1, 2, 3]]), r"shape \(4,\).*got \(1, 4\)"),
        (torch.randn(4, 8), torch.tensor([0, 1, 2, 5]), r"\[0, 5\), got values in \[0, 5\]"),
        (torch.randn(4, 8), torch.tensor([-1, 1, 2, 3]), r"\[0, 5\), got values in \[-1, 3\]"),
        (torch.randn(4, 8), torch.tensor([0.0, 1.0, 2.0, 3.0]), "integer tensor, got torch.float"),
        (torch.arange(32).view(4, 8), None, "floating point, got torch.int64"),
        ([[0.0] * 8], None, "torch.Tensor, got list"),
    ],
)
def test_bad_input_is_a_value_error_with_the_numbers(x, y, pattern):
    head = marginface.create_head("cosface", 8, 5)
    with pytest.raises(ValueError, match=pattern):
        head(x, y)
    if y is not None:
        with pytest.raises(ValueError, match=pattern):
            head.loss(x, y)
