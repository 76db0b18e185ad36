"""Evaluation plots as matplotlib ``Figure`` objects (no pyplot, so no GUI backend and no global
state; hand them to :class:`~marginface.evaluation.report.Report` or ``fig.savefig``).

* :func:`plot_roc`: ROC curves, TAR against FAR on a log axis; several curves (checkpoints,
  pair sets) overlaid.
* :func:`plot_score_histograms`: genuine and impostor cosine-score histograms, with the
  threshold.
* :func:`plot_cmc`: CMC curves of identification, overlaid.
* :func:`plot_metric_bars`: one metric of several checkpoints side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from marginface.evaluation.metrics import roc


def _figure(figsize: tuple[float, float]) -> tuple[Figure, object]:
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_roc(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    title: str = "ROC",
    figsize: tuple[float, float] = (6.0, 4.5),
) -> Figure:
    """ROC curves with a log FAR axis.

    Args:
        curves: label -> ``(scores, issame)`` of that curve's pairs.
        title: axes title.

    The FAR axis starts at the smallest FAR the curves resolve (1 / most impostor pairs).
    """
    if not curves:
        raise ValueError("plot_roc needs at least one curve")
    fig, ax = _figure(figsize)
    smallest = 1.0
    for label, (scores, issame) in curves.items():
        fpr, tpr, _ = roc(scores, issame)
        num_impostor = int((~np.asarray(issame, dtype=bool)).sum())
        floor = 1.0 / max(num_impostor, 1)
        smallest = min(smallest, floor)
        auc = float(np.trapezoid(tpr, fpr))
        # the step curve; FAR 0 is drawn at the axis floor
        ax.step(
            np.maximum(fpr, floor),
            tpr,
            where="post",
            label=f"{label} (AUC {auc:.3f})",
            linewidth=1.6,
        )
    chance = np.logspace(np.log10(smallest), 0, 100)
    ax.plot(chance, chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlim(smallest, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false accept rate (FAR, log scale)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 3:  # many long labels: below the axes, where they hide no curve
        fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    else:
        ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_score_histograms(
    scores: ArrayLike,
    issame: ArrayLike,
    threshold: float | None = None,
    title: str = "Cosine scores",
    bins: int = 50,
    figsize: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """Histograms (densities) of genuine and impostor pair scores, with ``threshold`` marked."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(issame, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and issame {y.shape} must be equal-length 1-D arrays")
    fig, ax = _figure(figsize)
    lo, hi = (float(s.min()), float(s.max())) if len(s) else (-1.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
    for mask, label, color in ((y, "genuine", "tab:green"), (~y, "impostor", "tab:red")):
        if mask.any():
            ax.hist(
                s[mask],
                bins=edges,
                density=True,
                alpha=0.55,
                color=color,
                label=f"{label} ({int(mask.sum())} pairs)",
            )
    if threshold is not None:
        ax.axvline(
            threshold,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"threshold {threshold:.3f}",
        )
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_cmc(
    curves: Mapping[str, Sequence[float]],
    title: str = "CMC",
    figsize: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """CMC curves: identification rate against rank (``curve[k-1]`` = rank-k accuracy)."""
    if not curves:
        raise ValueError("plot_cmc needs at least one curve")
    fig, ax = _figure(figsize)
    longest = 1
    for label, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        longest = max(longest, len(cmc))
        ax.plot(
            ranks,
            cmc,
            marker="o" if len(cmc) <= 20 else None,
            markersize=3,
            label=f"{label} (rank-1 {cmc[0]:.3f})",
        )
    ax.set_xlim(1, max(longest, 2))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_metric_bars(
    values: Mapping[str, Mapping[str, float]],
    metric: str = "accuracy",
    errors: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (6.5, 4.0),
) -> Figure:
    """Grouped bars: ``values[series][group]`` (e.g. checkpoint -> pair set -> accuracy)."""
    if not values:
        raise ValueError("plot_metric_bars needs at least one series")
    fig, ax = _figure(figsize)
    groups: list[str] = []
    for series in values.values():
        groups += [g for g in series if g not in groups]
    width = 0.8 / len(values)
    x = np.arange(len(groups))
    for i, (label, series) in enumerate(values.items()):
        heights = [series.get(g, np.nan) for g in groups]
        err = None
        if errors is not None and label in errors:
            err = [errors[label].get(g, 0.0) for g in groups]
        bars = ax.bar(
            x + (i - (len(values) - 1) / 2) * width,
            heights,
            width,
            yerr=err,
            capsize=3,
            label=label,
        )
        ax.bar_label(bars, fmt="%.3f", fontsize="x-small")
    ax.set_xticks(x, groups)
    ax.set_ylabel(metric)
    lowest = min((v for series in values.values() for v in series.values()), default=0.0)
    ax.set_ylim(max(0.0, np.floor((lowest - 0.1) * 10) / 10), 1.02)  # zoom on the differences
    ax.set_title(title or metric)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig
