"""CurricularFace: ArcFace target, hard negatives c (t + c), EMA t over several steps."""

from __future__ import annotations

import math

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


class HandCurricular:
    """HuangYG123/CurricularFace head/metrics.py written out (float64)."""

    def __init__(self, s=64.0, m=0.5):
        self.s, self.m, self.t = s, m, 0.0

    def __call__(self, x, w, y, train=True):
        cos = cosines(x, w).clamp(-1, 1)
        rows = torch.arange(len(y))
        target = cos[rows, y]
        if train:
            self.t = float(target.mean()) * 0.01 + 0.99 * self.t
        out = cos.clone()
        for i in range(len(y)):
            c = target[i]
            theta = torch.acos(c)
            raw = torch.cos(theta + self.m)  # the threshold: cos(theta_y + m), no fallback
            for j in range(cos.shape[1]):
                if j == int(y[i]):
                    if float(theta.detach()) + self.m < math.pi:
                        out[i, j] = raw
                    else:
                        out[i, j] = c - self.m * math.sin(self.m)
                elif float(cos[i, j].detach()) > float(raw.detach()):
                    out[i, j] = cos[i, j] * (self.t + cos[i, j])
        return out * self.s


def test_defaults():
    check_defaults_and_roundtrip("curricularface", {"s": 64.0, "m": 0.5, "momentum": 0.01})


def test_forward_and_t_over_steps():
    head, hand = make("curricularface", 12, 7), HandCurricular()
    hard_seen = 0
    for step in range(5):
        x, y = batch(12, 7, 8, seed=step)
        # pull half the rows near their class so that t moves and hard negatives appear
        x[:4] = x[:4] * 0.3 + head.weight.detach()[y[:4]] * 3
        got = head(x, y)
        want = hand(x, head.weight.detach(), y)
        assert torch.allclose(got, want, atol=1e-9), step
        assert math.isclose(float(head.t), hand.t, rel_tol=1e-12, abs_tol=1e-15)
        c = cosines(x, head.weight.detach())
        hard_seen += int((c > torch.cos(torch.acos(c.gather(1, y[:, None])) + 0.5)).sum())
    assert hard_seen > len(y)  # some non-target cells were modulated
    assert float(head.t) != 0.0
    other = make("curricularface", 12, 7)
    other.load_state_dict(head.state_dict())
    assert float(other.t) == float(head.t)
    head.eval()
    before = float(head.t)
    head(*batch(12, 7, 4))
    assert float(head.t) == before


def test_gradients_match_reference():
    head, hand = make("curricularface", 12, 7), HandCurricular()
    head.t.fill_(0.3)
    hand.t = 0.3
    x, y = batch(12, 7, 8, seed=3)
    x[:4] = x[:4] * 0.3 + head.weight.detach()[y[:4]] * 3
    x1 = x.clone().requires_grad_(True)
    head.eval()
    head.loss(x1, y).backward()
    x2 = x.clone().requires_grad_(True)
    w2 = head.weight.detach().clone().requires_grad_(True)
    F.cross_entropy(hand(x2, w2, y, train=False), y).backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-9)
    assert torch.allclose(head.weight.grad, w2.grad, atol=1e-9)


def test_fused_equals_dense_and_gradcheck():
    head = make("curricularface", 12, 7)
    head.t.fill_(0.4)
    x, y = batch(12, 7, 8, seed=4)
    x[:4] = x[:4] * 0.3 + head.weight.detach()[y[:4]] * 3
    check_fused_equals_dense(head, x, y)
    small = make("curricularface", 6, 4, s=4.0).eval()
    small.t.fill_(0.5)
    xs, ys = batch(6, 4, 4)
    xs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: small.loss(a, ys), (xs, small.weight))


def test_edges_and_bf16():
    check_edge_cases(make("curricularface", 12, 7))
    check_bf16_autocast("curricularface")
