"""Sub-center ArcFace: max over K sub-centres then ArcFace; dominant sub-centres, cleaning."""

from __future__ import annotations

import math

import pytest
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
from marginface.heads import ArcFace


def hand_logits(x, w, y, k, s=64.0, m=0.5):
    c = cosines(x, w)  # (B, C*K)
    c = c.view(c.shape[0], -1, k).amax(dim=2)
    out = s * c.clone()
    for i, j in enumerate(y.tolist()):
        theta = math.acos(float(c[i, j]))
        if theta + m < math.pi:
            out[i, j] = s * math.cos(theta + m)
        else:
            out[i, j] = s * (float(c[i, j]) - m * math.sin(m))
    return out


def test_defaults():
    check_defaults_and_roundtrip(
        "subcenter_arcface", {"s": 64.0, "m": 0.5, "k": 3, "easy_margin": False}
    )
    head = make("subcenter_arcface", 12, 7)
    assert head.weight.shape == (21, 12) and head.subcenters == 3


@pytest.mark.parametrize("k", [1, 3])
def test_forward_matches_formula(k):
    head = make("subcenter_arcface", 12, 7, k=k)
    x, y = batch(12, 7, 8)
    got = head(x, y)
    assert torch.allclose(got, hand_logits(x, head.weight.detach(), y, k), atol=1e-10)
    assert torch.allclose(head(x), 64.0 * cosines(x, head.weight.detach()).view(8, 7, k).amax(2))


def test_fused_loss_equals_dense_and_gradcheck():
    head = make("subcenter_arcface", 12, 7)
    x, y = batch(12, 7, 8)
    check_fused_equals_dense(head, x, y)
    check_fused_equals_dense(head, x, y, chunk_size=1)
    head2 = make("subcenter_arcface", 6, 4, s=4.0)
    x2, y2 = batch(6, 4, 4)
    x2.requires_grad_(True)
    w = head2.weight
    assert torch.autograd.gradcheck(lambda a, b: head2.loss(a, y2, chunk_size=3), (x2, w))


def test_gradient_goes_to_the_winning_subcentre_only():
    head = make("subcenter_arcface", 12, 3, k=3)
    x, y = batch(12, 3, 1)
    head.loss(x, y).backward()
    c = cosines(x, head.weight.detach()).view(3, 3)
    losers = torch.ones(3, 3, dtype=torch.bool)
    losers[torch.arange(3), c.argmax(1)] = False
    g = head.weight.grad.view(3, 3, -1).norm(dim=2)
    assert (g[losers] == 0).all() and (g[~losers] > 0).all()


def test_edge_cases_and_bf16():
    check_edge_cases(make("subcenter_arcface", 12, 7))
    check_bf16_autocast("subcenter_arcface")


def _planted(deg_off):
    """3 classes x 3 orthonormal sub-centres in D=12; returns head, embeddings, labels."""
    head = make("subcenter_arcface", 12, 3, k=3)
    with torch.no_grad():
        head.weight.copy_(torch.eye(12, dtype=torch.float64)[:9] * 3.0)
    e = torch.eye(12, dtype=torch.float64)

    def at(row, other, deg):  # unit vector at `deg` degrees from e[row] towards e[other]
        a = math.radians(deg)
        return math.cos(a) * e[row] + math.sin(a) * e[other]

    xs, ys = [], []
    # class 0: dominant sub-centre 1 (rows 1); three clean samples, one near sub-centre 2
    xs += [at(1, 9, 10), at(1, 10, 20), at(1, 11, 30), at(2, 9, 5)]
    ys += [0, 0, 0, 0]
    # class 1: dominant sub-centre 0 (row 3); one sample `deg_off` degrees from it
    xs += [at(3, 9, 5), at(3, 10, 15), at(3, 11, deg_off)]
    ys += [1, 1, 1]
    # class 2: dominant sub-centre 2 (row 8)
    xs += [at(8, 9, 1), at(8, 10, 2)]
    ys += [2, 2]
    return head, torch.stack(xs) * 4.0, torch.tensor(ys)


def test_dominant_subcentres_and_cleaning():
    head, x, y = _planted(deg_off=80.0)
    dom = head.dominant_subcenters(x, y)
    assert dom.tolist() == [1, 0, 2]
    keep = head.clean(x, y, threshold_deg=75.0)
    # the sample near class 0's sub-centre 2 is 90 deg from the dominant one; 80 > 75 too
    assert keep.tolist() == [True, True, True, False, True, True, False, True, True]
    # by hand: angle to the dominant sub-centre
    w = F.normalize(head.weight.detach(), dim=1).view(3, 3, 12)
    ang = torch.rad2deg(torch.acos((F.normalize(x, dim=1) * w[y, dom[y]]).sum(1).clamp(-1, 1)))
    assert torch.equal(keep, ang <= 75.0)
    assert head.clean(x, y, threshold_deg=85.0).tolist() == [True] * 3 + [False] + [True] * 5
    # in small batches the answer is the same
    assert torch.equal(head.clean(x, y, batch_size=2), keep)
    assert torch.equal(head.dominant_subcenters(x, y, batch_size=3), dom)


def test_collapse_to_dominant_subcentre():
    head, x, y = _planted(deg_off=10.0)
    dom = head.dominant_subcenters(x, y)
    flat = head.collapse(dom)
    assert isinstance(flat, ArcFace) and flat.weight.shape == (3, 12)
    assert flat.hparams() == {"s": 64.0, "m": 0.5, "easy_margin": False}
    expected = head.weight.detach().view(3, 3, 12)[torch.arange(3), dom]
    assert torch.equal(flat.weight.detach(), expected)
    # the clean samples lie nearest their dominant centre: same logits as the K=3 head
    keep = head.clean(x, y)
    assert torch.allclose(flat(x[keep], y[keep]), head(x[keep], y[keep]), atol=1e-12)
    with pytest.raises(ValueError, match="dominant"):
        head.collapse(torch.tensor([0, 1]))


def test_bad_k():
    with pytest.raises(ValueError, match="k"):
        make("subcenter_arcface", k=0)
