"""ElasticFace (Arc, Cos, and the "+" variants): margins from N(m, std) per sample."""

from __future__ import annotations

import math

import pytest
import torch

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
from marginface.heads.elasticface import assign_sorted

NAMES = ["elasticface_arc", "elasticface_cos", "elasticface_arc_plus", "elasticface_cos_plus"]
DEFAULTS = {
    "elasticface_arc": (0.5, 0.05),
    "elasticface_cos": (0.35, 0.05),
    "elasticface_arc_plus": (0.5, 0.0175),
    "elasticface_cos_plus": (0.35, 0.02),
}


def drawn(seed, n, m, std):
    """The documented source of the margins: a CPU generator seeded with `seed`, float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.normal(m, std, (n,), generator=g, dtype=torch.float64)


def hand_sorted(margins, cos_y):
    """ElasticFace+ by hand: the i-th smallest target cosine gets the i-th largest margin."""
    out = torch.empty_like(margins)
    big_first = sorted(margins.tolist(), reverse=True)
    for rank, row in enumerate(sorted(range(len(cos_y)), key=lambda r: float(cos_y[r]))):
        out[row] = big_first[rank]
    return out


def hand_logits(name, x, w, y, margins, s=64.0):
    cos = cosines(x, w)
    out = cos.clone()
    for i, j in enumerate(y.tolist()):
        c, m = float(cos[i, j]), float(margins[i])
        if "arc" in name:
            theta = math.acos(c)
            out[i, j] = math.cos(theta + m) if theta + m < math.pi else c - m * math.sin(m)
        else:
            out[i, j] = c - m
    return s * out


@pytest.mark.parametrize("name", NAMES)
def test_defaults(name):
    m, std = DEFAULTS[name]
    check_defaults_and_roundtrip(name, {"s": 64.0, "m": m, "std": std, "seed": None})


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_formula_over_steps_and_restores(name):
    m, std = DEFAULTS[name]
    head = make(name, seed=123, std=0.1)  # a wide std makes the sort visible
    g = torch.Generator().manual_seed(123)
    states = []
    for step in range(3):
        x, y = batch(12, 7, 8, seed=step)
        states.append({k: v.clone() for k, v in head.state_dict().items()})
        got = head(x, y)
        margins = torch.normal(m, 0.1, (8,), generator=g, dtype=torch.float64)
        cos_y = cosines(x, head.weight.detach()).gather(1, y[:, None]).squeeze(1)
        if name.endswith("_plus"):
            margins = hand_sorted(margins, cos_y)
        assert torch.allclose(head.last_margins, margins, atol=0, rtol=0)
        assert torch.allclose(got, hand_logits(name, x, head.weight.detach(), y, margins))
    # a restored head draws what the original drew at that step
    again = make(name, seed=999, std=0.1)
    again.load_state_dict(states[1])
    x, y = batch(12, 7, 8, seed=1)
    again(x, y)
    head.load_state_dict(states[1])
    head(x, y)
    assert torch.equal(again.last_margins, head.last_margins)
    # eval: the mean margin, no draw
    head.eval()
    before = head.rng_state.clone()
    assert torch.allclose(head(x, y), hand_logits(name, x, head.weight.detach(), y, [m] * 8))
    assert torch.equal(head.rng_state, before)


def test_plus_gives_larger_margins_to_harder_samples():
    head = make("elasticface_arc_plus", seed=5, std=0.2)
    x, y = batch(12, 7, 16, seed=3)
    head(x, y)
    cos_y = cosines(x, head.weight.detach()).gather(1, y[:, None]).squeeze(1)
    order = torch.argsort(cos_y)
    assert torch.all(head.last_margins[order][1:] <= head.last_margins[order][:-1])
    assert torch.allclose(head.last_margins.sort().values, drawn(5, 16, 0.5, 0.2).sort().values)


def test_reference_assignment_is_wrong_and_ours_is_not():
    """The reference gives row i sorted_margin[order[i]] (order: cosines descending); that is
    the inverse permutation of what is needed.  Cosines (0.1, 0.9, 0.5):"""
    cos_y = torch.tensor([0.1, 0.9, 0.5], dtype=torch.float64)
    margins = torch.tensor([0.45, 0.55, 0.50], dtype=torch.float64)
    ascending = torch.sort(margins).values
    order = torch.sort(cos_y, descending=True).indices
    reference = ascending[order]
    assert reference.tolist() == [0.5, 0.55, 0.45]  # the easiest row (0.9) gets the largest
    assert assign_sorted(margins, cos_y).tolist() == [0.55, 0.45, 0.5]
    assert assign_sorted(margins, cos_y).tolist() == hand_sorted(margins, cos_y).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_fused_equals_dense_gradcheck_edges(name):
    head = make(name, seed=7)
    x, y = batch(12, 7, 8)
    check_fused_equals_dense(head, x, y)
    small = make(name, 6, 4, s=4.0, seed=3)
    xs, ys = batch(6, 4, 4)
    xs.requires_grad_(True)
    rng = small.rng_state.clone()

    def fn(a, w):  # the same margins at every evaluation
        small.rng_state.copy_(rng)
        return small.loss(a, ys)

    assert torch.autograd.gradcheck(fn, (xs, small.weight))
    check_edge_cases(make(name, seed=1))
    check_bf16_autocast(name, seed=0)


def test_seed_none_follows_torch_manual_seed():
    torch.manual_seed(4)
    a = marginface.create_head("elasticface_cos", 8, 5)
    torch.manual_seed(4)
    b = marginface.create_head("elasticface_cos", 8, 5)
    assert torch.equal(a.rng_state, b.rng_state)
    with pytest.raises(ValueError, match="std"):
        marginface.create_head("elasticface_cos", 8, 5, std=-1.0)
