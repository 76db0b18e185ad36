"""The generic report builder and the evaluation plots."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from marginface.evaluation.plots import plot_cmc, plot_metric_bars, plot_roc, plot_score_histograms
from marginface.evaluation.report import Report


def _fig() -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_report_writes_markdown_html_and_pngs(tmp_path):
    report = Report("Run <1>", intro="First paragraph.\n\nSecond | paragraph.")
    report.add_section("Results").add_table(
        [["arcface", 0.99123, None], ["a|b", 1, True]], headers=["head", "acc", "flag"]
    )
    report.add_table([{"x": 1.5, "y": "z"}, {"x": 2.0}], caption="dict rows")
    report.add_figure(_fig(), "roc", caption="ROC curves").add_code("marginface eval ...")
    paths = report.write(tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.startswith("# Run <1>\n")
    assert "| head | acc | flag |" in md and "| arcface | 0.9912 |  |" in md
    assert "| a\\|b | 1 | True |" in md  # pipes escaped
    assert "| 1.5000 | z |" in md and "| 2.0000 |  |" in md
    assert "![ROC curves](figures/roc.png)" in md
    png = (tmp_path / "out" / "figures" / "roc.png").read_bytes()
    assert png.startswith(b"\x89PNG") and paths["figures"] == [tmp_path / "out/figures/roc.png"]
    page = paths["html"].read_text()
    assert "<title>Run &lt;1&gt;</title>" in page and "<p>Second | paragraph.</p>" in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 1 and base64.b64decode(embedded[0]) == png
    assert 'src="figures' not in page  # self-contained
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_report_errors():
    report = Report("r").add_figure(_fig(), "a")
    with pytest.raises(ValueError, match="used twice"):
        report.add_figure(_fig(), "a")
    with pytest.raises(ValueError, match="letters, digits"):
        report.add_figure(_fig(), "../evil")
    with pytest.raises(ValueError, match="row 1 has 1 cells, expected 2"):
        report.add_table([[1, 2], [3]], headers=["a", "b"])


def _labels(fig: Figure) -> tuple[str, str, str, list[str]]:
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    return ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), legend


def test_plots_have_titles_labels_legends():
    rng = np.random.default_rng(0)
    issame = np.arange(400) % 2 == 0
    scores = np.where(issame, rng.normal(0.5, 0.2, 400), rng.normal(0, 0.2, 400))
    fig = plot_roc({"ckpt A": (scores, issame), "ckpt B": (scores * 0.5, issame)}, title="lfw")
    title, xlabel, ylabel, legend = _labels(fig)
    assert title == "lfw" and "FAR" in xlabel and "TAR" in ylabel and legend[2] == "chance"
    assert legend[0].startswith("ckpt A (AUC 0.9") and legend[1].startswith("ckpt B (AUC 0.9")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] == pytest.approx(1 / 200)
    many = plot_roc({f"c{i}": (scores, issame) for i in range(4)})
    assert many.axes[0].get_legend() is None and len(many.legends[0].get_texts()) == 5
    fig = plot_score_histograms(scores, issame, threshold=0.25)
    _, xlabel, _, legend = _labels(fig)
    assert xlabel == "cosine similarity"
    assert legend == ["genuine (200 pairs)", "impostor (200 pairs)", "threshold 0.250"]
    fig = plot_cmc({"a": [0.5, 0.75, 1.0]})
    assert _labels(fig)[3] == ["a (rank-1 0.500)"]
    fig = plot_metric_bars({"a": {"lfw": 0.9}, "b": {"lfw": 0.8, "cfp": 0.7}})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["lfw", "cfp"]
    Report("x").add_figure(fig, "bars")  # renders without a display
