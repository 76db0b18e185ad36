"""The classic picture: features of a few identities on the circle (2-D) and the sphere (3-D),
one panel per head, colour per identity; class centres (the head's weight rows) as lines/crosses.

Plain softmax spreads identities as wedges of varying radius; the normalised heads put them on
the sphere, and the margins make each identity's cluster tighter and the gaps between clusters
wider. Each panel's title gives the two numbers to look at: the mean angle of a feature to its
identity's mean direction (compactness) and the mean angle between an identity's mean direction
and the nearest other one (separation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from marginface.demo.runner import ToyResult


def _colours(n: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N) for i in range(n)])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def toy_statistics(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Compactness and separation of normalised features, in degrees.

    ``intra_deg``: mean angle from a feature to its identity's mean direction; ``inter_deg``:
    mean over identities of the angle from its mean direction to the nearest other identity's;
    ``min_inter_deg``: the smallest such angle.
    """
    x = _unit(np.asarray(features, dtype=np.float64))
    classes = np.unique(labels)
    means = _unit(np.stack([x[labels == c].mean(axis=0) for c in classes]))
    own = means[np.searchsorted(classes, labels)]
    intra = np.degrees(np.arccos(np.clip(np.sum(x * own, axis=1), -1, 1)))
    cos = means @ means.T
    np.fill_diagonal(cos, -1.0)
    inter = np.degrees(np.arccos(np.clip(cos.max(axis=1), -1, 1)))
    return {
        "intra_deg": float(intra.mean()),
        "inter_deg": float(inter.mean()),
        "min_inter_deg": float(inter.min()),
    }


def _title(toy: ToyResult) -> str:
    st = toy_statistics(toy.features, toy.labels)
    return f"{toy.head}\nspread {st['intra_deg']:.1f}°, gap {st['inter_deg']:.1f}°"


def plot_circle_panels(toys: Sequence[ToyResult], title: str | None = None) -> Figure:
    """2-D toy: per head, raw features (top) and normalised features on the unit circle
    (bottom, with the class-centre directions)."""
    if not toys:
        raise ValueError("plot_circle_panels needs at least one head")
    n = len(toys)
    fig = Figure(figsize=(3.1 * n, 6.6), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for col, toy in enumerate(toys):
        if toy.features.shape[1] != 2:
            raise ValueError(f"{toy.head}: 2-D panels need 2-D features, got {toy.features.shape}")
        classes = np.unique(toy.labels)
        colours = _colours(len(classes))
        top, bottom = axes[0, col], axes[1, col]
        for i, c in enumerate(classes):
            pts = toy.features[toy.labels == c]
            top.scatter(pts[:, 0], pts[:, 1], s=7, color=colours[i], alpha=0.75, linewidths=0)
            u = _unit(pts)
            bottom.scatter(u[:, 0], u[:, 1], s=10, color=colours[i], alpha=0.6, linewidths=0)
        k = max(1, len(toy.centres) // len(classes))
        for r, w in enumerate(_unit(toy.centres)):
            bottom.plot([0, 1.18 * w[0]], [0, 1.18 * w[1]], color=colours[r // k], lw=1, ls="--")
        theta = np.linspace(0, 2 * np.pi, 200)
        bottom.plot(np.cos(theta), np.sin(theta), color="grey", lw=0.8)
        lim = float(np.abs(toy.features).max()) * 1.08 or 1.0
        top.set_xlim(-lim, lim)
        top.set_ylim(-lim, lim)
        bottom.set_xlim(-1.25, 1.25)
        bottom.set_ylim(-1.25, 1.25)
        for ax in (top, bottom):
            ax.set_aspect("equal")
            ax.grid(True, alpha=0.25)
            ax.tick_params(labelsize="x-small")
        top.set_title(_title(toy), fontsize="medium")
        top.set_xlabel("feature 1", fontsize="small")
        top.set_ylabel("feature 2", fontsize="small")
        bottom.set_xlabel("normalised feature 1", fontsize="small")
        bottom.set_ylabel("normalised feature 2", fontsize="small")
    fig.suptitle(
        title
        or "2-D embedding: raw features (top), normalised on the unit circle (bottom; dashed: "
        "class centres). Colour = identity.",
        fontsize="medium",
    )
    return fig


def plot_sphere_panels(toys: Sequence[ToyResult], title: str | None = None) -> Figure:
    """3-D toy: per head, normalised features on the unit sphere (mpl_toolkits.mplot3d), class
    centres as black-edged crosses."""
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3d projection)

    if not toys:
        raise ValueError("plot_sphere_panels needs at least one head")
    n = len(toys)
    fig = Figure(figsize=(3.6 * n, 4.4))  # 3-D axes: explicit margins leave room for titles
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.02, top=0.80, wspace=0.05)
    u, v = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 16j]
    for col, toy in enumerate(toys):
        if toy.features.shape[1] != 3:
            raise ValueError(f"{toy.head}: 3-D panels need 3-D features, got {toy.features.shape}")
        ax = fig.add_subplot(1, n, col + 1, projection="3d")
        ax.plot_wireframe(
            np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v),
            color="lightgrey", linewidth=0.4, alpha=0.6,
        )  # fmt: skip
        classes = np.unique(toy.labels)
        colours = _colours(len(classes))
        for i, c in enumerate(classes):
            p = _unit(toy.features[toy.labels == c])
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=8, color=colours[i], alpha=0.8, depthshade=True)
        k = max(1, len(toy.centres) // len(classes))
        w = _unit(toy.centres) * 1.12
        for r, c in enumerate(w):
            ax.scatter(*c, s=60, marker="X", color=colours[r // k], edgecolors="black", lw=0.6)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-1.1, 1.1)
        ax.set_zlim(-1.1, 1.1)
        ax.view_init(elev=22, azim=35)
        ax.set_xticks([-1, 0, 1])
        ax.set_yticks([-1, 0, 1])
        ax.set_zticks([-1, 0, 1])
        ax.tick_params(labelsize="x-small")
        ax.set_title(_title(toy), fontsize="medium")
    fig.suptitle(
        title
        or "3-D embedding: normalised features on the unit sphere (crosses: class centres). "
        "Colour = identity.",
        fontsize="medium",
        y=0.99,
    )
    return fig
