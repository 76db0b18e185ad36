"""The papers' analytic pictures, computed from the heads' own :meth:`margin` (one formula, one
place): the target logit against the angle theta to the own centre, and the binary decision
boundaries in the (theta1, theta2) plane.

Every curve is :func:`marginface.heads.scale.target_curve` of a head built with
:func:`marginface.heads.create_head` (float64, eval mode), i.e. exactly the target cosine the head
trains with, divided by its scale:

* softmax (normalised): NormFace's target, cos theta (no margin);
* SphereFace, m = 4: lambda cos theta + psi(theta), over 1 + lambda, with lambda at the end of its
  annealing (``lambda_min`` = 5), and the pure psi(theta) = (-1)^k cos(m theta) - 2k of the paper
  (lambda = 0: ``base`` = ``lambda_min`` = 0);
* CosFace, m = 0.35: cos theta - m;
* ArcFace, m = 0.5: cos(theta + m), where theta + m > pi continued as cos theta - m sin m (the
  head's fallback, so the target keeps falling);
* combined (m1, m2, m3) = (1, 0.3, 0.2), InsightFace's combined margin: cos(theta + m2) - m3.

Binary decision boundaries: two classes, a feature at angles theta1, theta2 from their centres.
Every logit carries the same scale (s, or the feature norm for SphereFace), so class 1 wins *with
its margin* where target(cos theta1) > cos theta2: its boundary is theta2 = acos(target(cos
theta1)) (theta2 = 180 degrees where the target is below -1: no feature passes); class 2's is the
mirror image, theta1 = acos(target(cos theta2)). Between the two lies the decision margin, a
region in which neither class's margin condition holds (the ArcFace paper's table of decision
boundaries and its figure of decision margins): empty for normalised softmax (both boundaries are
theta1 = theta2), a band of constant angular width for ArcFace (theta2 = theta1 + m), one that is
narrowest near 90 degrees for CosFace, a wedge theta1 < theta2 / m for SphereFace's pure psi.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Curve:
    """One loss of the figures: ``label``, a head name and its hyperparameters, and
    ``iteration`` (SphereFace's annealing step the head is set to; None = untouched)."""

    label: str
    head: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    iteration: int | None = None
    style: str = "-"


#: the losses of both figures, in the papers' order (margins at their usual values)
CURVES: tuple[Curve, ...] = (
    Curve("softmax (normalised): cos θ", "normface"),
    # lambda = max(lambda_min, base (1 + gamma it)^-power) is lambda_min = 5 from it = 1659 on
    Curve("SphereFace m=4, λ=5 (annealed)", "sphereface", {"m": 4}, iteration=10**6),
    Curve(
        "SphereFace m=4, pure ψ (λ=0)",
        "sphereface",
        {"m": 4, "base": 0.0, "lambda_min": 0.0},
        style="--",
    ),
    Curve("CosFace m=0.35: cos θ − m", "cosface", {"m": 0.35}),
    Curve("ArcFace m=0.5: cos(θ + m)", "arcface", {"m": 0.5}),
    Curve(
        "combined (1, 0.3, 0.2): cos(θ + 0.3) − 0.2", "combined", {"m1": 1.0, "m2": 0.3, "m3": 0.2}
    ),
)


def target_cosine(curve: Curve, cos: np.ndarray) -> np.ndarray:
    """The target cosine after the margin, ``curve``'s head's :meth:`margin` on ``cos`` (float64,
    any shape), via :func:`marginface.heads.scale.target_curve`."""
    from marginface.heads import create_head
    from marginface.heads.scale import target_curve

    with torch.random.fork_rng(devices=[]):  # building a head draws its (unused) weight
        head = create_head(curve.head, 1, 2, **curve.kwargs)
    if curve.iteration is not None:
        head.iteration.fill_(curve.iteration)
    c = torch.as_tensor(np.asarray(cos, dtype=np.float64))
    return target_curve(head, c).numpy()


def target_logits(theta_deg: np.ndarray, curves: Sequence[Curve] = CURVES) -> dict[str, np.ndarray]:
    """Per curve label, the target cosine at the angles ``theta_deg`` (degrees, float64)."""
    cos = np.cos(np.radians(np.asarray(theta_deg, dtype=np.float64)))
    return {c.label: target_cosine(c, cos) for c in curves}


def class1_boundary(curve: Curve, theta1_deg: np.ndarray) -> np.ndarray:
    """theta2 (degrees) on class 1's decision boundary at ``theta1_deg``: target(cos theta1)
    = cos theta2, i.e. acos of the target clipped to [-1, 1] (180 where the target is below
    -1). Class 2's boundary is the same curve with the axes swapped."""
    cos1 = np.cos(np.radians(np.asarray(theta1_deg, dtype=np.float64)))
    return np.degrees(np.arccos(np.clip(target_cosine(curve, cos1), -1.0, 1.0)))


def plot_target_logits(curves: Sequence[Curve] = CURVES, points: int = 721) -> Figure:
    """The target logit (divided by the scale) against theta in [0, 180] degrees, one line per
    loss (ArcFace paper, figure of the target logit curves)."""
    from matplotlib import colormaps

    theta = np.linspace(0.0, 180.0, points)
    values = target_logits(theta, curves)
    fig = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["tab10"]
    colour_of: dict[str, Any] = {}
    for curve in curves:
        colour = colour_of.setdefault(curve.head, cmap(len(colour_of) % 10))
        y = values[curve.label]
        jumps = np.flatnonzero(np.abs(np.diff(y)) > 0.05)  # ArcFace's fallback: do not join
        y = np.insert(y, jumps + 1, np.nan)
        x = np.insert(theta, jumps + 1, np.nan)
        ax.plot(x, y, curve.style, color=colour, lw=1.6, label=curve.label)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlim(0, 180)
    ax.set_ylim(-3.2, 1.1)
    ax.set_xticks(np.arange(0, 181, 30))
    ax.set_xlabel("θ: angle between the feature and its own class centre (degrees)")
    ax.set_ylabel("target logit / s")
    ax.set_title("Target logit against θ (computed by each head's margin())", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    return fig


def plot_decision_boundaries(curves: Sequence[Curve] = CURVES, points: int = 721) -> Figure:
    """Binary decision boundaries in the (theta1, theta2) plane, one panel per loss: class 1's
    boundary (blue), class 2's (orange), the decision margin between them shaded (module doc).
    The pure-psi SphereFace is drawn in the SphereFace panel as thin lines."""
    groups: dict[str, list[Curve]] = {}
    for curve in curves:
        groups.setdefault(curve.head, []).append(curve)
    n = len(groups)
    fig = Figure(figsize=(2.9 * n, 3.8), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    t = np.linspace(0.0, 180.0, points)
    for ax, members in zip(axes, groups.values(), strict=True):
        for i, curve in enumerate(members):
            b = class1_boundary(curve, t)  # class 1: theta2 = b(theta1); class 2 mirrored
            lw, alpha = (1.6, 1.0) if i == 0 else (0.9, 0.8)
            ax.plot(t, b, curve.style, color="tab:blue", lw=lw, alpha=alpha,
                    label="class 1 boundary" if i == 0 else None)  # fmt: skip
            ax.plot(b, t, curve.style, color="tab:orange", lw=lw, alpha=alpha,
                    label="class 2 boundary" if i == 0 else None)  # fmt: skip
            if i == 0:
                # the margin: theta2 below class 1's boundary and theta1 below class 2's,
                # i.e. between b^-1 and b on the vertical through theta1
                inverse = np.interp(t, b, t, left=0.0, right=180.0)  # b is non-decreasing
                ax.fill_between(t, inverse, b, where=b > inverse, color="grey", alpha=0.3,
                                lw=0, label="decision margin")  # fmt: skip
        ax.plot([0, 180], [0, 180], color="black", lw=0.5, ls=":")
        ax.text(150, 25, "class 2", ha="center", fontsize="small")
        ax.text(30, 160, "class 1", ha="center", fontsize="small")
        ax.set_xlim(0, 180)
        ax.set_ylim(0, 180)
        ax.set_aspect("equal")
        ax.set_xticks(np.arange(0, 181, 45))
        ax.set_yticks(np.arange(0, 181, 45))
        ax.tick_params(labelsize="x-small")
        ax.set_xlabel("θ1 (degrees)", fontsize="small")
        ax.set_ylabel("θ2 (degrees)", fontsize="small")
        names = [c.label + (" (dashed)" if i else "") for i, c in enumerate(members)]
        ax.set_title("\n".join(names), fontsize="x-small")
        ax.grid(True, alpha=0.25)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3,
               fontsize="small")  # fmt: skip
    fig.suptitle(
        "Binary decision boundaries: class 1 wins where target(cos θ1) > cos θ2 "
        "(grey: decision margin)",
        fontsize="medium",
    )
    return fig
