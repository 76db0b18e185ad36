"""``marginface demo --quick`` end to end through the real CLI (CI's smoke test): the files, the
numbers in metrics.json, the table in report.md, the figures embedded in report.html."""

from __future__ import annotations

import json
import math
import re
import time

import pytest
import torch

from marginface.cli import main
from marginface.heads import create_head
from marginface.heads.scale import auto_scale

HEADS = ["softmax", "sphereface", "cosface", "arcface"]
FIGURES = [
    "roc", "training-curves", "angles", "toy-2d", "toy-3d", "contact-sheet",
    "target-logits", "decision-boundaries",
    *[f"scores-{h}" for h in HEADS],
]  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``marginface demo --quick`` run shared by the tests of this module."""
    out = tmp_path_factory.mktemp("demo") / "out"
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    code = main(["demo", "--quick", "--output", str(out), "--quiet"])
    elapsed = time.perf_counter() - t0
    assert torch.get_num_threads() == threads  # the demo restores the thread count
    return code, out, elapsed


def test_quick_demo_exits_cleanly_and_writes_the_report(quick_run):
    code, out, elapsed = quick_run
    assert code == 0
    for name in ("report.html", "report.md", "metrics.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for fig in FIGURES:
        png = out / "figures" / f"{fig}.png"
        assert png.is_file(), fig
        assert png.read_bytes()[:4] == b"\x89PNG"
    print(f"demo --quick took {elapsed:.1f} s wall")


def test_metrics_json_has_finite_numbers_per_head(quick_run):
    _, out, _ = quick_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["heads"]) == HEADS
    assert metrics["pairs"]["num_impostor"] >= 1000  # TAR@FAR=1e-3 must be resolvable
    assert metrics["pairs"]["num_impostor"] > metrics["pairs"]["num_genuine"]
    for head in HEADS:
        entry = metrics["heads"][head]
        (run,) = entry["runs"]
        assert run["seed"] == 0 and run["steps"] > 0
        for key in ("accuracy", "eer", "auc", "train_time_s", "final_loss",
                    "angle_own_mean_deg", "angle_other_mean_deg"):  # fmt: skip
            assert isinstance(run[key], float) and math.isfinite(run[key]), (head, key)
        assert 0.0 <= run["accuracy"] <= 1.0 and 0.0 <= run["eer"] <= 1.0
        assert 0.0 <= run["tar_at_far"]["1e-03"] <= 1.0
        assert "1e-04" not in run["tar_at_far"]  # not resolvable by 5000 impostor pairs
        assert 0.0 <= run["nearer_own_share"] <= 1.0
        assert entry["mean"]["accuracy"] == pytest.approx(run["accuracy"])
        assert entry["std"]["accuracy"] == 0.0
        for dim in ("2d", "3d"):
            toy = metrics["toy"][head][dim]
            assert math.isfinite(toy["final_loss"]) and 0 <= toy["intra_deg"] <= 180
    assert set(metrics["verdicts"]) == set(HEADS) - {"softmax"}
    for head in set(HEADS) - {"softmax"}:
        v = metrics["verdicts"][head]["tar@1e-03"]
        assert v["ci_low"] <= v["difference"] <= v["ci_high"]
        expected = "ahead" if v["ci_low"] > 0 else "behind" if v["ci_high"] < 0 else "within noise"
        assert v["verdict"] == expected
    # the demo's documented departure from the usual s = 64: s = auto, margins as usual
    classes = metrics["config"]["train_identities"]
    auto = auto_scale(create_head("arcface", 4, 3), classes)
    kwargs = metrics["heads"]["arcface"]["head_kwargs"]
    assert kwargs == {"s": pytest.approx(auto, abs=1e-4), "m": 0.5, "easy_margin": False}
    assert metrics["heads"]["cosface"]["head_kwargs"]["m"] == 0.35
    line = f"arcface: s=auto = {auto:.2f} for {classes} classes (usual 64.0)"
    assert any(line in d for d in metrics["deviations"])


def test_report_md_table_lists_every_head(quick_run):
    _, out, _ = quick_run
    text = (out / "report.md").read_text()
    header = "| head | 10-fold accuracy | TAR@FAR=1e-3 | TAR@FAR=1e-4 | EER |"
    assert header in text
    for head in HEADS:
        number = r"(0\.\d{4}|1\.0000)"
        row = re.search(rf"^\| {head} \| {number} \| {number} \| n/a \|", text, re.M)
        assert row is not None, head
    for fig in FIGURES:
        assert f"(figures/{fig}.png)" in text
    assert "cosface: s=auto = " in text  # departures from the defaults are listed
    assert "smoke run: too short to compare" in text and "95% interval" in text


def test_report_html_embeds_every_figure(quick_run):
    _, out, _ = quick_run
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert "figures/" not in page  # self-contained: no links to files
    for head in HEADS:
        assert f"<td>{head}</td>" in page


def test_runs_are_usable_checkpoints(quick_run, tmp_path):
    """Each head's run folder is a normal training run: marginface eval can read it."""
    _, out, _ = quick_run
    run = out / "runs" / "arcface-seed0"
    assert (run / "model.pt").is_file() and (run / "model.json").is_file()
    code = main([
        "eval", "--checkpoint", str(run), "--pairs", "synthetic:6x3,first=5000",
        "--output", str(tmp_path / "eval"),
    ])  # fmt: skip
    assert code == 0


def test_bad_head_kwargs_is_a_clear_error(tmp_path, capsys):
    code = main(["demo", "--quick", "--head-kwargs", "{s: 64", "--output", str(tmp_path)])
    assert code == 2
    assert "--head-kwargs" in capsys.readouterr().err


def test_unknown_head_is_a_clear_error(tmp_path, capsys):
    code = main(["demo", "--quick", "--heads", "softmax,nosuchface", "--output", str(tmp_path)])
    assert code == 2
    assert "nosuchface" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()
