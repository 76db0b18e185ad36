"""AdaCos: the fixed scale sqrt(2) log(C - 1), the dynamic scale re-estimated from each batch.

The reference below is written from the paper's steps as the reference code
(4uiiurz1/pytorch-adacos ``metrics.py``) orders them: B_avg at the old scale, the median
target angle, the new scale, then the logits with the new scale.

Tolerances (float64): a logit is s * c with s < 10 and |c| <= 1, and s_new is a log of a sum
of at most B * C = 56 exponentials divided by a cosine >= cos(pi/4); each carries a relative
rounding error of a few times 56 * 2**-53 ~ 6e-15, so 1e-12 (absolute, on values <= 10) is
two orders above what arithmetic can explain and far below any formula difference.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import marginface
from _support.heads import (
    batch,
    check_bf16_autocast,
    check_defaults_and_roundtrip,
    check_edge_cases,
    cosines,
    make,
)
from marginface.heads import adacos_scale

TOL = 1e-12


class HandAdaCos:
    """AdaCos's scale, step by step, in plain float64 torch over the dense cosines."""

    def __init__(self, num_classes: int, dynamic: bool):
        self.s = math.sqrt(2.0) * math.log(num_classes - 1)
        self.dynamic = dynamic
        self.theta_med = None

    def __call__(self, x, w, y, train=True):
        cos = cosines(x, w)
        if train and self.dynamic:
            rows = torch.arange(len(y))
            non_target = torch.ones_like(cos, dtype=torch.bool)
            non_target[rows, y] = False
            b_avg = float(torch.exp(self.s * cos[non_target]).sum()) / len(y)
            angles = sorted(math.acos(min(1.0, max(-1.0, float(c)))) for c in cos[rows, y])
            self.theta_med = angles[(len(angles) - 1) // 2]  # torch.median: lower middle
            self.s = math.log(b_avg) / math.cos(min(math.pi / 4, self.theta_med))
        return self.s * cos


def pulled_batch(head, b=8, seed=0, pull=3.0):
    """A batch with half its rows pulled towards their centres (small target angles)."""
    x, y = batch(12, 7, b, seed=seed)
    x[: b // 2] = x[: b // 2] * 0.3 + pull * head.weight.detach()[y[: b // 2]]
    return x, y


def hand_gradients(x, w, y, s):
    """d mean_i CE(s c_i, y_i) / d x and d w, by the chain rule through c = x^.w^."""
    xn, wn = x / x.norm(dim=1, keepdim=True), w / w.norm(dim=1, keepdim=True)
    c = xn @ wn.t()
    g = s * (torch.softmax(s * c, dim=1) - F.one_hot(y, w.shape[0]).double()) / len(y)
    gx = (g @ wn - (g * c).sum(1, keepdim=True) * xn) / x.norm(dim=1, keepdim=True)
    gw = (g.t() @ xn - (g * c).sum(0)[:, None] * wn) / w.norm(dim=1, keepdim=True)
    return gx, gw


def test_defaults_and_fixed_scale():
    check_defaults_and_roundtrip("adacos", {"s": None, "dynamic": False})
    assert adacos_scale(3) == math.sqrt(2.0) * math.log(2.0)
    assert adacos_scale(10_575) == pytest.approx(13.1044, abs=1e-4)  # CASIA-WebFace's C
    head = marginface.create_head("adacos", 8, 1000)
    assert head.s == adacos_scale(1000) and head.scale.dtype == torch.float64
    assert head.hparams() == {"s": adacos_scale(1000), "dynamic": False}
    assert marginface.create_head("adacos", 8, 1000, s=5.0).s == 5.0
    assert "adacos" in marginface.list_heads()
    assert "scale" in head.state_dict() and "scale" not in dict(head.named_parameters())


@pytest.mark.parametrize("bad", [2, 1, 2.0, True])
def test_fewer_than_three_classes_need_an_explicit_scale(bad):
    with pytest.raises(ValueError, match=r"C >= 3 \(C = 2 gives s = 0\)"):
        adacos_scale(bad)
    if isinstance(bad, int) and not isinstance(bad, bool):
        with pytest.raises(ValueError, match="C >= 3"):
            marginface.create_head("adacos", 8, bad)
        torch.manual_seed(0)
        head = marginface.create_head("adacos", 8, bad, s=4.0, dynamic=True)
        x, y = torch.randn(3, 8), torch.zeros(3, dtype=torch.long)
        assert torch.isfinite(head.loss(x, y)) and head.s > 0
        if bad == 1:  # no non-target class: B_avg = 0, the scale stays
            assert head.s == 4.0
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        marginface.create_head("adacos", 8, 0)
    with pytest.raises(ValueError, match="must be positive"):
        marginface.create_head("adacos", 8, 10, s=0.0)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_loss_and_gradients_against_the_formula(dynamic, fused):
    """Logits s c and the hand-derived gradient of the mean CE, s held constant."""
    head = make("adacos", dynamic=dynamic).train()
    hand = HandAdaCos(7, dynamic)
    x, y = pulled_batch(head, seed=2)
    x1 = x.clone().requires_grad_(True)
    loss = head.loss(x1, y, fused=fused, chunk_size=3)
    loss.backward()
    w = head.weight.detach()
    want = F.cross_entropy(hand(x, w, y), y)
    assert head.s == pytest.approx(hand.s, rel=TOL)
    assert abs(float(loss.detach()) - float(want)) <= TOL
    gx, gw = hand_gradients(x, w, y, hand.s)
    torch.testing.assert_close(x1.grad, gx, rtol=0, atol=TOL)
    torch.testing.assert_close(head.weight.grad, gw, rtol=0, atol=TOL)
    assert head.scale.grad is None and not head.scale.requires_grad


def test_dynamic_scale_over_steps_matches_the_reference():
    dense, fused = make("adacos", dynamic=True), make("adacos", dynamic=True)
    hand = HandAdaCos(7, True)
    branches = set()
    for step in range(6):
        pull = [0.0, 6.0, 1.0, 10.0, 0.5, 8.0][step]  # the median angle on both sides of pi/4
        x, y = pulled_batch(dense, seed=step, pull=pull)
        w = dense.weight.detach()
        want = hand(x, w, y)
        branches.add(hand.theta_med < math.pi / 4)
        torch.testing.assert_close(dense(x, y), want, rtol=0, atol=TOL)
        loss = fused.loss(x, y, chunk_size=3)
        assert abs(float(loss.detach()) - float(F.cross_entropy(want, y))) <= TOL
        assert dense.s == pytest.approx(hand.s, rel=TOL)
        assert fused.s == pytest.approx(hand.s, rel=TOL)
    assert branches == {True, False}
    # the lower median of the angles (torch's, the reference code's), not their midpoint
    cos = cosines(x, dense.weight.detach()).gather(1, y[:, None]).squeeze(1)
    angles = sorted(math.acos(float(c)) for c in cos)
    assert angles[3] != pytest.approx((angles[3] + angles[4]) / 2, rel=1e-6)


def test_fused_equals_dense_in_training_and_never_holds_b_by_c():
    head = make("adacos", dynamic=True)
    x, y = pulled_batch(head, seed=4)
    state = copy.deepcopy(head.state_dict())
    ps = [x.clone().requires_grad_(True), head.weight]
    fused = head.loss(ps[0], y, chunk_size=3)
    g_fused = torch.autograd.grad(fused, ps)
    s_fused = head.s
    head.load_state_dict(state)
    dense = F.cross_entropy(head(ps[0], y), y)
    g_dense = torch.autograd.grad(dense, ps)
    assert head.s == pytest.approx(s_fused, rel=TOL) and head.s != float(state["scale"])
    assert abs(float(fused.detach()) - float(dense.detach())) <= TOL
    for a, b in zip(g_fused, g_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
            return out

    b, d, c = 64, 4, 4000
    big = marginface.create_head("adacos", d, c, dynamic=True)
    xb, yb = torch.randn(b, d, requires_grad=True), torch.randint(0, c, (b,))
    with Largest() as mode:
        big.loss(xb, yb, chunk_size=200).backward()
    assert mode.largest <= max(b * 200, c * d)


def test_eval_and_unlabelled_calls_keep_the_scale():
    head = make("adacos", dynamic=True)
    x, y = pulled_batch(head, seed=5)
    head(x, y)
    moved = head.s
    assert moved != adacos_scale(7)
    head(x)  # training mode without labels
    assert head.s == moved
    head.eval()
    cos = cosines(x, head.weight.detach())
    torch.testing.assert_close(head(x, y), moved * cos, rtol=0, atol=TOL)
    head.loss(x, y)
    head.loss(x, y, fused=False)
    assert head.s == moved


def test_state_dict_round_trip_resumes_exactly():
    head = make("adacos", dynamic=True)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    assert [p.shape for p in head.parameters()] == [head.weight.shape]  # s gets no update
    for step in range(3):
        x, y = pulled_batch(head, seed=10 + step)
        opt.zero_grad()
        head.loss(x, y).backward()
        opt.step()
    state = copy.deepcopy(head.state_dict())
    other = marginface.create_head("adacos", 12, 7, **head.hparams()).double()
    other.load_state_dict(state)
    assert other.s == head.s
    x, y = pulled_batch(head, seed=20)
    assert torch.equal(head(x, y), other(x, y)) and head.s == other.s


def test_scale_is_kept_when_the_batch_would_make_it_non_positive():
    """Three classes, the two non-targets opposite the sample: B_avg = 2 exp(-s) < 1."""
    head = marginface.create_head("adacos", 2, 3, dynamic=True).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]))
    x, y = torch.tensor([[2.0, 0.0]], dtype=torch.float64), torch.tensor([0])
    s0 = head.s
    assert math.log(2.0 * math.exp(-s0)) < 0  # the formula would give a negative scale
    loss = head.loss(x, y)
    assert head.s == s0 and torch.isfinite(loss)
    head(x, y)
    assert head.s == s0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_targets_at_cos_plus_minus_one(sign):
    """theta_med = 0 (divide by 1) or pi (divide by cos(pi/4)); finite loss and gradients."""
    head = make("adacos", dynamic=True)
    hand = HandAdaCos(7, True)
    y = torch.tensor([0, 1, 2, 3])
    x = sign * 2.5 * head.weight.detach()[y]
    hand(x, head.weight.detach(), y)
    head(x, y)
    assert head.s == pytest.approx(hand.s, rel=TOL)
    check_edge_cases(make("adacos", dynamic=True))
    check_edge_cases(make("adacos"))


def test_empty_batch_and_bf16():
    head = marginface.create_head("adacos", 8, 5, dynamic=True)
    x, y = torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)
    assert head(x, y).shape == (0, 5) and head.s == adacos_scale(5)
    with pytest.raises(ValueError, match="empty batch"):
        head.loss(x, y)
    check_bf16_autocast("adacos", dynamic=True)
    check_bf16_autocast("adacos")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dynamic_fused_equals_dense_on_cuda():
    torch.manual_seed(0)
    heads = [marginface.create_head("adacos", 32, 5000, dynamic=True).cuda().double()]
    heads.append(copy.deepcopy(heads[0]))
    x = torch.randn(64, 32, device="cuda", dtype=torch.float64)
    y = torch.randint(0, 5000, (64,), device="cuda")
    fused = heads[0].loss(x, y, chunk_size=700)
    dense = F.cross_entropy(heads[1](x, y), y)
    assert heads[0].scale.is_cuda and heads[0].s != adacos_scale(5000)
    assert heads[0].s == pytest.approx(heads[1].s, rel=TOL)
    assert abs(float(fused - dense)) <= TOL * 10  # values ~ log C = 8.5
