"""AdaFace: the reference code's formula written out, EMA state over several steps."""

from __future__ import annotations

import math

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

EPS = 1e-3


class HandAdaFace:
    """mk-minchul/AdaFace head.py, line by line (float64), with the EMA state."""

    def __init__(self, m=0.4, h=0.333, s=64.0, t_alpha=0.01):
        self.m, self.h, self.s, self.t_alpha = m, h, s, t_alpha
        self.batch_mean, self.batch_std = 20.0, 100.0

    def __call__(self, x, w, y, train=True):
        norms = x.norm(dim=1)
        cosine = cosines(x, w).clamp(-1 + EPS, 1 - EPS)
        safe = norms.clamp(0.001, 100).detach()
        if train:
            self.batch_mean = float(safe.mean()) * self.t_alpha + (1 - self.t_alpha) * (
                self.batch_mean
            )
            self.batch_std = float(safe.std()) * self.t_alpha + (1 - self.t_alpha) * (
                self.batch_std
            )
        scaler = ((safe - self.batch_mean) / (self.batch_std + EPS) * self.h).clamp(-1, 1)
        out = cosine.clone()
        for i, j in enumerate(y.tolist()):
            theta = torch.acos(cosine[i, j])
            theta_m = (theta - self.m * scaler[i]).clamp(EPS, math.pi - EPS)
            out[i, j] = torch.cos(theta_m) - (self.m + self.m * scaler[i])
        return out * self.s


def test_defaults():
    check_defaults_and_roundtrip("adaface", {"s": 64.0, "m": 0.4, "h": 0.333, "t_alpha": 0.01})
    head = marginface.create_head("adaface", 8, 5)
    assert float(head.batch_mean) == 20.0 and float(head.batch_std) == 100.0


def test_forward_and_state_over_steps_match_reference():
    head, hand = make("adaface"), HandAdaFace()
    for step in range(4):
        # norms spread around the EMA so that z covers (-1, 1) and the clips
        x, y = batch(12, 7, 8, scale=[0.5, 3.0, 10.0, 40.0][step], seed=step)
        x = x * torch.linspace(0.2, 8.0, 8, dtype=torch.float64)[:, None]
        got = head(x, y)
        want = hand(x, head.weight.detach(), y)
        assert torch.allclose(got, want, atol=1e-9), step
        assert math.isclose(float(head.batch_mean), hand.batch_mean, rel_tol=1e-12)
        assert math.isclose(float(head.batch_std), hand.batch_std, rel_tol=1e-12)
    state = head.state_dict()
    assert {"batch_mean", "batch_std"} <= set(state)
    again = make("adaface")
    again.load_state_dict(state)
    again.eval()
    head.eval()
    x, y = batch(12, 7, 5, scale=5.0, seed=9)
    assert torch.allclose(again(x, y), hand(x, head.weight.detach(), y, train=False))
    assert float(again.batch_mean) == float(head.batch_mean)  # eval: no update


def test_gradients_match_reference_and_norm_is_detached():
    head, hand = make("adaface"), HandAdaFace()
    x, y = batch(12, 7, 6, scale=6.0)
    x1 = x.clone().requires_grad_(True)
    head.loss(x1, y).backward()
    x2 = x.clone().requires_grad_(True)
    w2 = head.weight.detach().clone().requires_grad_(True)
    F.cross_entropy(hand(x2, w2, y), y).backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-9)
    assert torch.allclose(head.weight.grad, w2.grad, atol=1e-9)
    # the gradient is orthogonal to x: nothing flows through the norm
    assert torch.allclose((x1.grad * x).sum(1), torch.zeros(6, dtype=torch.float64), atol=1e-9)


def test_fused_equals_dense_and_gradcheck():
    head = make("adaface")
    x, y = batch(12, 7, 8, scale=15.0)
    check_fused_equals_dense(head, x, y)
    small = make("adaface", 6, 4, s=4.0).eval()
    xs, ys = batch(6, 4, 4, scale=15.0)
    # the norm is detached by design, so the numerical gradient in x would see z move;
    # check the weight's gradient numerically (x's is checked against the formula above)
    assert torch.autograd.gradcheck(lambda w: small.loss(xs, ys), (small.weight,))


def test_single_sample_batch_keeps_std_and_edges_finite():
    head = make("adaface")
    x, y = batch(12, 7, 1, scale=30.0)
    head(x, y)
    assert float(head.batch_std) == 100.0 and math.isfinite(float(head.batch_mean))
    check_edge_cases(make("adaface"))
    check_bf16_autocast("adaface")
