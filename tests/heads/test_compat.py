"""The classic arcface-pytorch classes (``models/metrics.py`` of ronghuaiyang/arcface-pytorch)
against that file's own formulas (transcribed, made device-agnostic)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from marginface.compat import AddMarginProduct, ArcMarginProduct, SphereProduct


def classic_sphere(weight, x, label, m, it):
    """metrics.py's SphereProduct.forward after ``it`` calls (its ``self.iter`` = it)."""
    mlambda = [
        lambda v: v**0,
        lambda v: v**1,
        lambda v: 2 * v**2 - 1,
        lambda v: 4 * v**3 - 3 * v,
        lambda v: 8 * v**4 - 8 * v**2 + 1,
        lambda v: 16 * v**5 - 20 * v**3 + 5 * v,
    ]
    lamb = max(5.0, 1000.0 * (1 + 0.12 * it) ** (-1))
    cos_theta = F.linear(F.normalize(x), F.normalize(weight)).clamp(-1, 1)
    cos_m_theta = mlambda[m](cos_theta)
    theta = cos_theta.data.acos()
    k = (m * theta / 3.14159265).floor()
    phi_theta = ((-1.0) ** k) * cos_m_theta - 2 * k
    norm = torch.norm(x, 2, 1)
    one_hot = torch.zeros(cos_theta.size())
    one_hot.scatter_(1, label.view(-1, 1), 1)
    output = (one_hot * (phi_theta - cos_theta) / (1 + lamb)) + cos_theta
    return output * norm.view(-1, 1)


def classic_add_margin(weight, x, label, s, m):
    cosine = F.linear(F.normalize(x), F.normalize(weight))
    phi = cosine - m
    one_hot = torch.zeros(cosine.size())
    one_hot.scatter_(1, label.view(-1, 1).long(), 1)
    return ((one_hot * phi) + ((1.0 - one_hot) * cosine)) * s


def classic_arc_margin(weight, x, label, s, m, easy_margin):
    cosine = F.linear(F.normalize(x), F.normalize(weight))
    sine = torch.sqrt(1.0 - torch.pow(cosine, 2))
    phi = cosine * math.cos(m) - sine * math.sin(m)
    if easy_margin:
        phi = torch.where(cosine > 0, phi, cosine)
    else:
        phi = torch.where(cosine > math.cos(math.pi - m), phi, cosine - math.sin(math.pi - m) * m)
    one_hot = torch.zeros(cosine.size())
    one_hot.scatter_(1, label.view(-1, 1).long(), 1)
    return ((one_hot * phi) + ((1.0 - one_hot) * cosine)) * s


def _data(c=11, d=10, b=16):
    torch.manual_seed(0)
    return torch.randn(b, d), torch.randint(0, c, (b,))


def test_signatures_and_weight_shape():
    for cls in (SphereProduct, AddMarginProduct, ArcMarginProduct):
        head = cls(10, 11)
        assert head.weight.shape == (11, 10)
        assert (head.in_features, head.out_features) == (10, 11)
    assert AddMarginProduct(4, 3).s == 30.0 and AddMarginProduct(4, 3).m == 0.40
    arc = ArcMarginProduct(4, 3)
    assert (arc.s, arc.m, arc.easy_margin) == (30.0, 0.50, False)
    assert SphereProduct(4, 3).m == 4


def test_add_margin_product_matches_classic():
    x, y = _data()
    head = AddMarginProduct(10, 11)
    ref = classic_add_margin(head.weight.detach(), x, y, 30.0, 0.40)
    torch.testing.assert_close(head(x, y), ref, rtol=1e-5, atol=1e-5)


def test_arc_margin_product_matches_classic_both_modes():
    x, y = _data()
    for easy in (False, True):
        head = ArcMarginProduct(10, 11, easy_margin=easy)
        with torch.no_grad():  # put a few targets past theta + m > pi
            head.weight[y[:4]] = -x[:4]
        ref = classic_arc_margin(head.weight.detach(), x, y, 30.0, 0.5, easy)
        assert torch.isfinite(ref).all()
        torch.testing.assert_close(head(x, y), ref, rtol=1e-5, atol=1e-5)


def test_sphere_product_matches_classic_over_iterations():
    x, y = _data()
    for m in (1, 2, 3, 4, 5):
        head = SphereProduct(10, 11, m=m)
        for it in range(1, 4):
            out = head(x, y)  # training mode: one step per call, as metrics.py's
            ref = classic_sphere(head.weight.detach(), x, y, m, it)
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


def test_classic_arcface_nan_on_its_centre_fixed():
    """metrics.py gives NaN where the embedding sits on its class centre; ours stays finite."""
    torch.manual_seed(3)
    head = ArcMarginProduct(64, 200)
    y = torch.arange(200)
    x = (head.weight.detach() * torch.rand(200, 1) * 5).requires_grad_(True)
    classic_logits = classic_arc_margin(head.weight.detach(), x.detach(), y, 30.0, 0.5, False)
    assert torch.isnan(classic_logits).any(), "rounding puts some cosines past 1 in metrics.py"
    x_classic = x.detach().clone().requires_grad_(True)
    classic_loss = F.cross_entropy(
        classic_arc_margin(head.weight.detach(), x_classic, y, 30, 0.5, False), y
    )
    classic_loss.backward()
    assert not torch.isfinite(x_classic.grad).all()
    loss = F.cross_entropy(head(x, y), y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    finite = torch.isfinite(classic_logits).all(dim=1)
    torch.testing.assert_close(head(x, y)[finite], classic_logits[finite], rtol=1e-5, atol=1e-4)
