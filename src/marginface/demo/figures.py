"""The demo's own figures (the ROC and score histograms come from marginface.evaluation.plots):
training curves of every head, the angle distributions, the contact sheet as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from marginface.demo.cache import CachedFaces
from marginface.demo.runner import RunResult


def plot_training_curves(runs: Mapping[str, Sequence[RunResult]]) -> Figure:
    """Loss against optimizer step, one line per head (seed 0 solid, other seeds faint).

    The losses of the heads are on different scales (a scale s of 64 multiplies the logits),
    so the y axis is logarithmic.
    """
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for i, (head, results) in enumerate(runs.items()):
        for j, r in enumerate(results):
            if not len(r.history):
                continue
            ax.plot(
                r.history[:, 0],
                np.maximum(r.history[:, 1], 1e-4),
                color=cmap(i % 10),
                alpha=1.0 if j == 0 else 0.35,
                linewidth=1.4 if j == 0 else 0.9,
                label=head if j == 0 else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (log scale)")
    title = "Training loss per head"
    if any(len(v) > 1 for v in runs.values()):
        title += " (seed 0 solid, other seeds faint)"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_angle_distributions(runs: Mapping[str, RunResult]) -> Figure:
    """Per head: histograms of each training sample's angle to its own class centre and to the
    nearest other class centre (degrees), with the share of samples closer to their own."""
    n = len(runs)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 3.0 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    largest = max(max(r.angles_own.max(), r.angles_other.max()) for r in runs.values())
    edges = np.linspace(0, 120 if largest < 120 else 180, 61)  # 180: a head that collapsed
    for ax, (head, r) in zip(axes, runs.items(), strict=False):
        ax.hist(r.angles_own, bins=edges, alpha=0.6, color="tab:blue", label="own centre")
        ax.hist(r.angles_other, bins=edges, alpha=0.6, color="tab:orange", label="nearest other")
        closer = float(np.mean(r.angles_own < r.angles_other))
        ax.set_title(
            f"{head}: {np.mean(r.angles_own):.0f}° vs {np.mean(r.angles_other):.0f}°\n"
            f"{100 * closer:.1f}% nearer their own",
            fontsize="medium",
        )
        ax.set_xlabel("angle to class centre (degrees)")
        ax.set_ylabel("training samples")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper right")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(
        "Angle from each training sample to its own class centre vs the nearest other centre "
        "(the head's weight rows)",
        fontsize="medium",
    )
    return fig


def contact_sheet_png(
    dataset: CachedFaces, identities: int = 8, images: int = 10, zoom: int = 3
) -> bytes:
    """The dataset's contact sheet (rows = identities, columns = images), enlarged ``zoom``
    times (nearest neighbour, so the pixels the network sees stay visible), as PNG bytes."""
    from marginface.data.export import contact_sheet

    per_identity = int(np.bincount(dataset.labels).max())
    sheet = contact_sheet(dataset, identities=identities, images=min(images, per_identity))
    if zoom > 1:
        sheet = sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
