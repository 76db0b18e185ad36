"""The evaluation report and metrics.json layout, built from precomputed scores (no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from marginface.evaluation.config import EvalConfig
from marginface.evaluation.evaluate import EvaluationResult, LoadedCheckpoint, pair_set_names
from marginface.evaluation.metrics import verification_metrics
from marginface.evaluation.run_report import build_report


def _result(checkpoints: list[str], pair_sets: list[str]) -> EvaluationResult:
    rng = np.random.default_rng(0)
    issame = np.arange(200) % 2 == 0
    ckpts = [
        LoadedCheckpoint(n, Path(n), nn.Identity(), {"backbone": "x", "image_size": 16})
        for n in checkpoints
    ]
    result = EvaluationResult(ckpts, pair_sets, EvalConfig(checkpoints, pair_sets))
    for c in checkpoints:
        result.verification[c], result.scores[c] = {}, {}
        for p in pair_sets:
            scores = np.where(issame, rng.normal(0.5, 0.2, 200), rng.normal(0, 0.2, 200))
            result.verification[c][p] = verification_metrics(scores, issame)
            result.scores[c][p] = (scores, issame)
    return result


def test_metrics_json_layout():
    one = _result(["a"], ["lfw", "cfp"]).metrics_json()
    assert set(one) == {"lfw", "cfp"} and set(one["lfw"]["tar_at_far"]) == {"1e-02", "1e-01"}
    several = _result(["a", "b"], ["lfw"]).metrics_json()
    assert set(several) == {"a", "b"} and set(several["b"]) == {"lfw"}


def test_report_figure_names_stay_unique():
    # "x y" and "x_y" sanitise to the same file name
    report = build_report(_result(["m 1", "m_1"], ["x y", "x_y"]))
    names = [b.data["name"] for b in report.blocks if b.kind == "figure"]
    assert len(names) == len(set(names)) == 2 + 1 + 1 + 4
    assert {"roc_x_y", "roc_x_y-2", "roc_all", "accuracy"} <= set(names)


def test_pair_set_names():
    assert pair_set_names(["lfw.bin", "cfp_fp.bin"], ["lfw", "cfp_fp"]) == ["lfw", "cfp_fp"]
    assert pair_set_names(
        ["synthetic:4", "synthetic:5", "a/lfw.bin"], ["synthetic"] * 2 + ["lfw"]
    ) == [
        "synthetic:4",
        "synthetic:5",
        "lfw",
    ]


def test_checkpoint_names(tmp_path):
    from marginface.evaluation.evaluate import checkpoint_name

    for folder in ("runs/arcface", "runs/arcface/best"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    assert checkpoint_name(tmp_path / "runs/arcface") == "arcface"
    assert checkpoint_name(tmp_path / "runs/arcface/model.pt") == "arcface"
    # the best-validation model keeps its run's name
    assert checkpoint_name(tmp_path / "runs/arcface/best") == "arcface/best"
    assert checkpoint_name(tmp_path / "runs/arcface/best/model.pt") == "arcface/best"
    assert checkpoint_name(tmp_path / "exported.pt") == "exported"


def test_eval_config_names_what_cannot_be_evaluated():
    import pytest

    cases = {
        "give at least one pair set": {},
        "give both a gallery list and a probe list": {"pairs": ["x"], "gallery_list": "g"},
        "need an identification folder": {"pairs": ["x"], "gallery_list": "g", "probe_list": "p"},
        "eval config n_folds: must be None .* an int >= 2, got 1": {"pairs": ["x"], "n_folds": 1},
        "eval config max_pairs: must be an int >= 1, got True": {"pairs": ["x"], "max_pairs": True},
        "eval config threshold_grid: must be one of exact, insightface": {
            "pairs": ["x"],
            "threshold_grid": "grid",
        },
    }
    for message, keys in cases.items():
        with pytest.raises(ValueError, match=message):
            EvalConfig(["model"], **keys)
    assert EvalConfig(["model"], identification="faces").pairs == []
