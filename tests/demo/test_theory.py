"""The analytic figures: target-logit curves and binary decision boundaries from the heads'
margin(), checked against the papers' formulas written out by hand (float64)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from marginface.demo.theory import (
    CURVES,
    class1_boundary,
    plot_decision_boundaries,
    plot_target_logits,
    target_logits,
)

BY_HEAD = {c.label: c for c in CURVES}
# float64 arithmetic: Chebyshev T_4 and cos(a + b) expansions differ from numpy's cos by a few
# ulp; arccos near theta = 0 or 180 amplifies an ulp of the cosine by 1 / sin(theta) (below 1e-7
# degrees for the angles used here)
ATOL = 1e-12
ATOL_DEG = 1e-7


def _label(prefix: str) -> str:
    (label,) = [k for k in BY_HEAD if k.startswith(prefix)]
    return label


def _psi(theta: np.ndarray, m: int) -> np.ndarray:
    k = np.floor(m * theta / math.pi)
    return (-1.0) ** k * np.cos(m * theta) - 2.0 * k


def test_curves_equal_the_papers_formulas_by_hand():
    deg = np.array([0.0, 17.0, 30.0, 52.0, 100.0, 140.0, 155.0, 170.0, 180.0])
    t = np.radians(deg)
    got = target_logits(deg)
    assert got[_label("softmax")] == pytest.approx(np.cos(t), abs=ATOL)
    assert got[_label("CosFace")] == pytest.approx(np.cos(t) - 0.35, abs=ATOL)
    # ArcFace: cos(theta + m) while theta + m <= pi, then cos(theta) - m sin(m)
    arc = np.where(t + 0.5 <= math.pi, np.cos(t + 0.5), np.cos(t) - 0.5 * math.sin(0.5))
    assert (t + 0.5 > math.pi).sum() == 3  # the fallback is exercised
    assert got[_label("ArcFace")] == pytest.approx(arc, abs=ATOL)
    combined = np.where(t + 0.3 <= math.pi, np.cos(t + 0.3), np.cos(t) - 0.3 * math.sin(0.3))
    assert got[_label("combined")] == pytest.approx(combined - 0.2, abs=ATOL)
    assert got[_label("SphereFace m=4, pure")] == pytest.approx(_psi(t, 4), abs=ATOL)
    annealed = (5.0 * np.cos(t) + _psi(t, 4)) / 6.0  # lambda_min = 5
    assert got[_label("SphereFace m=4, λ=5")] == pytest.approx(annealed, abs=ATOL)
    # spot values: psi(60 deg) = -cos(240 deg) - 2 = -1.5; ArcFace at 0 is cos(0.5)
    assert target_logits(np.array([60.0]))[_label("SphereFace m=4, pure")][0] == pytest.approx(
        -1.5, abs=ATOL
    )
    assert got[_label("ArcFace")][0] == pytest.approx(0.8775825618903728, abs=ATOL)


def test_curves_fall_with_theta_and_lie_below_cos():
    """Every target decreases with theta over [0, 180] (SphereFace's psi and ArcFace's fallback
    exist for this) and a margin never raises the target above cos theta."""
    deg = np.linspace(0.0, 180.0, 3601)
    cos = np.cos(np.radians(deg))
    for label, y in target_logits(deg).items():
        assert np.all(np.diff(y) <= ATOL), label
        assert y[0] - y[-1] > 1.9, label  # falls by at least softmax's 2 over the range
        assert np.all(y <= cos + ATOL), label
        if not label.startswith("softmax"):
            assert np.all(y[1:] < cos[1:]), label  # strictly below for theta > 0
        if label.startswith(("CosFace", "ArcFace", "combined")):
            assert y[0] < 0.9, label  # additive margins lower the target even at theta = 0


def test_boundaries_satisfy_their_equations():
    t1 = np.array([0.0, 10.0, 40.0, 60.0, 100.0, 120.0, 150.0])
    r = np.radians(t1)
    b = {label: class1_boundary(c, t1) for label, c in BY_HEAD.items()}
    assert b[_label("softmax")] == pytest.approx(t1, abs=ATOL_DEG)  # theta1 = theta2
    # ArcFace: theta1 + m = theta2 (m = 0.5 rad) while that is below 180 degrees
    assert b[_label("ArcFace")] == pytest.approx(t1 + math.degrees(0.5), abs=ATOL_DEG)
    # CosFace: cos theta1 - m = cos theta2; 180 where cos theta1 - m < -1
    inside = np.cos(r) - 0.35 >= -1
    expected = np.full_like(t1, 180.0)
    expected[inside] = np.degrees(np.arccos(np.cos(r[inside]) - 0.35))
    assert not inside[-1]  # 150 degrees: cos - m < -1
    assert b[_label("CosFace")] == pytest.approx(expected, abs=ATOL_DEG)
    assert np.cos(np.radians(b[_label("CosFace")][:5])) == pytest.approx(
        np.cos(r[:5]) - 0.35, abs=ATOL
    )
    # SphereFace's pure psi: m theta1 = theta2 below 45 degrees, no theta2 passes beyond
    pure = b[_label("SphereFace m=4, pure")]
    assert pure[:3] == pytest.approx(4.0 * t1[:3], abs=ATOL_DEG)
    assert pure[4:] == pytest.approx(180.0)
    # beyond theta1 = 180 - 28.6 ArcFace's fallback target is below -1: no theta2 passes
    assert class1_boundary(BY_HEAD[_label("ArcFace")], np.array([152.0, 179.0])) == pytest.approx(
        [180.0, 180.0]
    )
    # every margin puts class 1's boundary above the diagonal (theta2 > theta1)
    for label, values in b.items():
        if not label.startswith("softmax"):
            assert np.all(values[1:] > t1[1:] + 1.0), label


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    return buf.getvalue()


def test_figures_render_with_one_line_per_curve():
    fig = plot_target_logits(points=181)
    (ax,) = fig.axes
    lines = [ln for ln in ax.get_lines() if ln.get_label() in BY_HEAD]
    assert [ln.get_label() for ln in lines] == [c.label for c in CURVES]
    arc = next(ln for ln in lines if ln.get_label().startswith("ArcFace"))
    x, y = (np.asarray(v, dtype=float) for v in arc.get_data())
    ok = ~np.isnan(y)
    assert y[ok] == pytest.approx(target_logits(x[ok])[arc.get_label()], abs=ATOL)
    assert np.isnan(y).sum() == 1  # the fallback's jump is not joined
    png = _png(fig)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    fig = plot_decision_boundaries(points=181)
    heads = {c.head for c in CURVES}
    assert len([a for a in fig.axes if a.get_visible()]) == len(heads)
    png = _png(fig)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
