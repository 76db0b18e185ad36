"""The scale rule (s = auto), the chance-level loss and the margin warm-up blend, by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import marginface
from marginface.heads.scale import (
    TARGET_PROBABILITY,
    auto_scale,
    chance_loss,
    target_curve,
    uses_scale,
)
from marginface.parallel import PartialFC


@pytest.mark.parametrize(
    ("name", "hp", "psi1"),
    [
        ("arcface", {}, math.cos(0.5)),
        ("cosface", {}, 1 - 0.35),
        ("normface", {}, 1.0),
        ("combined", {"m1": 1.0, "m2": 0.3, "m3": 0.2}, math.cos(0.3) - 0.2),
        ("arcface", {"m": 0.2}, math.cos(0.2)),
    ],
)
@pytest.mark.parametrize("classes", [2, 3, 299, 100_000])
def test_auto_scale_is_the_bound_and_reaches_the_target_probability(name, hp, psi1, classes):
    head = marginface.create_head(name, 4, 2, **hp)
    p = TARGET_PROBABILITY
    expected = (math.log(classes - 1) + math.log(p / (1 - p))) / psi1
    s = auto_scale(head, classes)
    assert s == pytest.approx(expected, rel=1e-12)
    # a sample on its centre, the C - 1 others orthogonal: the target's softmax probability
    logits = torch.zeros(classes, dtype=torch.float64)
    logits[0] = s * psi1
    # the softmax sums C float64 terms: its relative error is up to ~C * 2**-52
    assert float(torch.softmax(logits, 0)[0]) == pytest.approx(p, rel=4 * classes * 2**-52)


def test_auto_scale_grows_with_the_classes_and_the_margin():
    arc = marginface.create_head("arcface", 4, 2)
    cos = marginface.create_head("cosface", 4, 2)
    values = [auto_scale(arc, c) for c in (10, 100, 1000, 10_000, 100_000)]
    assert values == sorted(values) and values[-1] < 64
    assert auto_scale(cos, 1000) > auto_scale(arc, 1000)  # psi(1) = 0.65 < cos(0.5)


def test_auto_scale_refuses_what_it_cannot_fit():
    head = marginface.create_head("cosface", 4, 2, m=1.0)  # psi(1) = 0
    with pytest.raises(ValueError, match="target at cos = 1"):
        auto_scale(head, 100)
    with pytest.raises(ValueError, match="at least 2 classes"):
        auto_scale(marginface.create_head("arcface", 4, 2), 1)


def test_which_heads_take_the_scale():
    takes = {h for h in marginface.list_heads() if uses_scale(marginface.create_head(h, 4, 3))}
    assert {"arcface", "cosface", "normface", "combined", "curricularface"} <= takes
    # plain softmax, SphereFace (feature-norm scale) and the binary heads are left alone
    assert not takes & {"softmax", "sphereface", "sphereface2", "uniface", "adacos"}


def test_target_curve_is_the_margin_and_leaves_the_head_alone():
    head = marginface.create_head("arcface", 4, 2)
    c = torch.linspace(-1, 1, 9, dtype=torch.float64)
    theta = torch.acos(c)
    expected = torch.where(
        c > math.cos(math.pi - 0.5), torch.cos(theta + 0.5), c - 0.5 * math.sin(0.5)
    )
    torch.testing.assert_close(target_curve(head, c), expected, rtol=0, atol=1e-12)
    assert head.training and head.weight.dtype == torch.float32


def _flat_loss(head, classes: int, c: float) -> float:
    """Cross-entropy of a row whose every cosine is c (dense, float64)."""
    s = head.s
    target = s * float(target_curve(head, torch.tensor([c])))
    logits = torch.full((classes,), s * c, dtype=torch.float64)
    logits[0] = target
    return float(-torch.log_softmax(logits, 0)[0])


@pytest.mark.parametrize(("name", "s"), [("arcface", 64.0), ("arcface", 14.0), ("cosface", 30.0)])
def test_chance_loss_is_the_smallest_loss_of_equal_cosines(name, s):
    head = marginface.create_head(name, 4, 2, s=s)
    classes = 299
    chance = chance_loss(head, classes)
    grid = [_flat_loss(head, classes, c) for c in torch.linspace(-1, 1, 401).tolist()]
    # the grid of chance_loss is finer (2001 points) and includes these 401
    assert chance <= min(grid) + 1e-9
    assert chance >= min(grid) - 1e-3 * s  # within a grid step of the same curve
    if name == "cosface":  # c - psi(c) = m everywhere
        assert chance == pytest.approx(math.log1p((classes - 1) * math.exp(s * 0.35)), rel=1e-12)


def test_chance_loss_of_the_plain_softmax_is_log_c():
    assert chance_loss(marginface.create_head("softmax", 4, 2), 299) == pytest.approx(math.log(299))


def test_the_watch_tells_the_issue_runs_apart():
    # measured on 299 real people: s = 64 stalled at loss 20.8, s = 16 trained to 5.77
    from marginface.training.watch import STALLED_ABOVE

    stalled = chance_loss(marginface.create_head("arcface", 4, 2, s=64.0), 299)
    trained = chance_loss(marginface.create_head("arcface", 4, 2, s=16.0), 299)
    assert 20.8 > STALLED_ABOVE * stalled
    assert 5.77 < STALLED_ABOVE * trained


# ----------------------------------------------------------------------- margin warm-up blend
@pytest.mark.parametrize("name", ["arcface", "cosface", "combined", "curricularface"])
@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_margin_weight_blends_the_target_in_both_paths(name, w):
    torch.manual_seed(0)
    head = marginface.create_head(name, 8, 11).double()
    x = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 3, 7, 10, 1])
    head.margin_weight = w
    cos = F.linear(F.normalize(x), F.normalize(head.weight))
    cos_y = cos.gather(1, y[:, None]).squeeze(1)
    probe = marginface.create_head(name, 8, 11).double().eval()
    psi = probe.margin(cos_y, x.norm(dim=1))
    logits = head.s * cos.scatter(1, y[:, None], (w * psi + (1 - w) * cos_y)[:, None])
    if name == "curricularface":  # its hard negatives are modulated too: compare the paths only
        logits = head.eval()(x, y)
    expected = F.cross_entropy(logits, y)
    head.eval()
    dense = F.cross_entropy(head(x, y), y)
    fused = head.loss(x, y)
    torch.testing.assert_close(dense, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-12)
    (g_fused,) = torch.autograd.grad(fused, x)
    (g_dense,) = torch.autograd.grad(F.cross_entropy(head(x, y), y), x)
    torch.testing.assert_close(g_fused, g_dense, rtol=1e-10, atol=1e-12)


def test_margin_weight_zero_is_normface():
    torch.manual_seed(1)
    head = marginface.create_head("arcface", 8, 5, s=20.0).double()
    norm = marginface.create_head("normface", 8, 5, s=20.0).double()
    norm.load_state_dict(head.state_dict())
    x, y = torch.randn(4, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 4])
    head.margin_weight = 0.0
    torch.testing.assert_close(head.loss(x, y), norm.loss(x, y), rtol=1e-13, atol=0)


def test_margin_weight_reaches_the_sharded_classifier():
    torch.manual_seed(2)
    head = marginface.create_head("cosface", 8, 9).double()
    pfc = PartialFC(head, process_group="local").double()
    x, y = torch.randn(5, 8, dtype=torch.float64), torch.tensor([0, 8, 4, 4, 2])
    for w in (0.0, 0.5):
        head.margin_weight = pfc.head.margin_weight = w
        torch.testing.assert_close(pfc(x, y), head.loss(x, y), rtol=1e-12, atol=1e-12)
