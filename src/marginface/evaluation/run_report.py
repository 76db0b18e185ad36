"""The report of an evaluation run: ``metrics.json``, ``report.md``, ``report.html`` and
``figures/``, read from an :class:`~marginface.evaluation.evaluate.EvaluationResult` and its
:class:`~marginface.evaluation.config.EvalConfig`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from marginface.evaluation.evaluate import EvaluationResult, unique_names
from marginface.evaluation.folds import folds_text, one_value
from marginface.evaluation.metrics import FARS, far_key
from marginface.evaluation.report import Report
from marginface.files import atomic_write_text


def write_evaluation(result: EvaluationResult, output: str | os.PathLike) -> dict[str, Any]:
    """Write ``metrics.json`` and the report under ``output``; returns the report's paths."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} exists and is not a folder")
    report = build_report(result)
    text = json.dumps(result.metrics_json(), indent=2) + "\n"
    paths = report.write(output)
    atomic_write_text(output / "metrics.json", text)
    return {**paths, "metrics": output / "metrics.json"}


def run_settings(result: EvaluationResult) -> dict[str, Any]:
    """The settings the report lists: how the images were embedded, the folds, the config."""
    config, options = result.config, result.options
    return {
        "flip": options.flip,
        "batch_size": options.batch_size,
        "device": str(options.device),
        "max_pairs": config.max_pairs,
        "n_folds": config.n_folds if config.n_folds is not None else one_value(result.folds),
        "folds": result.folds,
        "fold_seed": config.fold_seed,
        "pairs": list(config.pairs),
        "identification": config.identification,
        "gallery_list": _text(config.gallery_list),
        "probe_list": _text(config.probe_list),
        "title": config.title,
        "detect": result.detect,
        "detect_cache": result.detect_cache,
        "threshold_grid": config.threshold_grid,
        "ijb": _text(config.ijb),
    }


def _text(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(path)


def _folds_of(result: EvaluationResult) -> str:
    return folds_text(result.folds, result.config.n_folds, result.config.fold_seed)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "x"


def build_report(result: EvaluationResult) -> Report:
    """The evaluation report: checkpoints, verification table, ROC curves (overlaid per pair
    set), score histograms, accuracy overlay of several checkpoints, identification + CMC."""
    report = Report(result.config.title, intro=_intro(result))
    report.add_section("Checkpoints")
    report.add_table(
        [
            [
                c.name,
                str(c.path),
                c.info.get("backbone"),
                c.info.get("backbone_kwargs", {}).get("embedding_size"),
                c.image_size,
                c.info.get("head"),
                c.info.get("threshold"),
            ]
            for c in result.checkpoints
        ],
        headers=["name", "path", "backbone", "dim", "image size", "head", "stored threshold"],
    )
    if result.pair_set_names:
        _verification_section(report, result)
    if result.ijb:
        _ijb_section(report, result)
    if result.identification:
        _identification_section(report, result)
    if result.warnings:
        report.add_section("Warnings")
        for w in result.warnings:
            report.add_text(w)
    report.add_section("Settings")
    report.add_code(json.dumps(run_settings(result), indent=2))
    return report


def _intro(result: EvaluationResult) -> str:
    grid = (
        "; thresholds from InsightFace's grid of squared distances 0, 0.01, ..., 3.99"
        if result.config.threshold_grid == "insightface"
        else "; every distinct score tried as threshold"
    )
    return (
        f"{len(result.checkpoints)} checkpoint(s) on {len(result.pair_set_names)} pair "
        f"set(s). Cosine similarity of L2-normalised embeddings"
        f"{' with flip test' if result.options.flip else ' (no flip test)'}; accuracy is "
        f"LFW-style: {_folds_of(result)}, threshold chosen on the other "
        f"folds (mean +- std" + grid + "). TAR@FAR only where the impostor pairs resolve the FAR."
    )


class _FigureNames:
    """File names of the report's figures, each new one made unique against those used."""

    def __init__(self, reserved: list[str]) -> None:
        self.used = list(reserved)

    def __call__(self, base: str) -> str:
        self.used.append(unique_names([*self.used, base])[-1])
        return self.used[-1]


def _verification_section(report: Report, result: EvaluationResult) -> None:
    report.add_section("Verification")
    _verification_table(report, result)
    figure_name = _FigureNames(["roc_all", "accuracy"])
    _roc_figures(report, result, figure_name)
    if len(result.checkpoints) > 1:
        _accuracy_figure(report, result)
    report.add_section("Score distributions", level=3)
    _score_histograms(report, result, figure_name)


def _verification_table(report: Report, result: EvaluationResult) -> None:
    fars = [
        far
        for far in sorted(FARS, reverse=True)
        if any(far in m["tar_at_far"] for per in result.verification.values() for m in per.values())
    ]
    rows = []
    for ckpt in result.checkpoints:
        for name, m in result.verification[ckpt.name].items():
            rows.append(
                [
                    ckpt.name,
                    name,
                    m["num_pairs"],
                    f"{_pct(m['accuracy'])} +- {_pct(m['accuracy_std'])}",
                    m["best_threshold"],
                    m["auc"],
                    _pct(m["eer"]),
                ]
                + [_pct(m["tar_at_far"][f]) if f in m["tar_at_far"] else "" for f in fars]
            )
    report.add_table(
        rows,
        headers=["checkpoint", "pair set", "pairs", "accuracy %", "best threshold", "AUC", "EER %"]
        + [f"TAR@FAR={far_key(f)} %" for f in fars],
    )


def _roc_figures(report: Report, result: EvaluationResult, figure_name: _FigureNames) -> None:
    """One ROC figure per pair set (the checkpoints overlaid), and all of them in one when
    several checkpoints meet several pair sets."""
    from marginface.evaluation.plots import plot_roc

    for name in result.pair_set_names:
        curves = {c.name: result.scores[c.name][name] for c in result.checkpoints}
        fig = plot_roc(curves, title=f"ROC: {name}")
        report.add_figure(
            fig, figure_name(f"roc_{_sanitize(name)}"), caption=f"ROC on {name} (log FAR axis)"
        )
    if len(result.checkpoints) > 1 and len(result.pair_set_names) > 1:
        curves = {
            f"{c.name} / {n}": result.scores[c.name][n]
            for c in result.checkpoints
            for n in result.pair_set_names
        }
        report.add_figure(
            plot_roc(curves, title="ROC: all checkpoints and pair sets"),
            "roc_all",
            caption="Every checkpoint on every pair set, overlaid",
        )


def _accuracy_figure(report: Report, result: EvaluationResult) -> None:
    from marginface.evaluation.plots import plot_metric_bars

    def per_checkpoint(key: str) -> dict[str, dict[str, float]]:
        return {
            c.name: {n: result.verification[c.name][n][key] for n in result.pair_set_names}
            for c in result.checkpoints
        }

    fig = plot_metric_bars(
        per_checkpoint("accuracy"),
        "accuracy",
        errors=per_checkpoint("accuracy_std"),
        title=f"Verification accuracy ({_folds_of(result)}: mean +- std)",
    )
    report.add_figure(fig, "accuracy", caption="Checkpoints side by side")


def _score_histograms(report: Report, result: EvaluationResult, figure_name: _FigureNames) -> None:
    from marginface.evaluation.plots import plot_score_histograms

    several = len(result.checkpoints) > 1
    for ckpt in result.checkpoints:
        for name in result.pair_set_names:
            scores, issame = result.scores[ckpt.name][name]
            m = result.verification[ckpt.name][name]
            label = f"{ckpt.name} on {name}" if several else name
            fig_name = figure_name(f"hist_{_sanitize(ckpt.name)}_{_sanitize(name)}")
            fig = plot_score_histograms(
                scores,
                issame,
                threshold=m["best_threshold"],
                title=f"Genuine vs impostor cosine: {label}",
            )
            report.add_figure(
                fig, fig_name, caption=f"Cosine scores, {label}; dashed: best threshold"
            )


def _ijb_section(report: Report, result: EvaluationResult) -> None:
    from marginface.evaluation.plots import plot_roc

    target = next(iter(result.ijb.values()))["target"]
    report.add_section(f"{target} 1:1 template verification")
    report.add_text(
        "As InsightFace's eval_ijbc.py: loose crops aligned by their 5 points, flip test, "
        "features weighted by the faceness score, media averaged and summed per template; TAR "
        "at the ROC point whose FAR is nearest each target FAR."
    )
    fars = sorted(FARS)
    report.add_table(
        [
            [name, m["num_templates"], m["num_pairs"], m["auc"]]
            + [_pct(m["tar_at_far"][far_key(f)]) for f in fars]
            for name, m in result.ijb.items()
        ],
        headers=["checkpoint", "templates", "pairs", "AUC"] + [f"TAR@{far_key(f)} %" for f in fars],
    )
    fig = plot_roc(dict(result.ijb_scores), title=f"ROC: {target} 1:1")
    report.add_figure(fig, f"roc_{target.lower()}", caption=f"{target} template pairs")


def _identification_section(report: Report, result: EvaluationResult) -> None:
    from marginface.evaluation.plots import plot_cmc

    source = result.config.identification
    report.add_section("Identification")
    report.add_text(
        f"Closed-set 1:N on {source}: gallery = "
        f"{'the given list' if result.config.gallery_list else 'first image of each identity'}, "
        "probes = the rest; an identity scores its best gallery image."
    )
    rows = [
        [n, _pct(m["rank1"]), _pct(m["rank5"]), m["num_gallery_identities"], m["num_probes"]]
        for n, m in result.identification.items()
    ]
    report.add_table(
        rows, headers=["checkpoint", "rank-1 %", "rank-5 %", "gallery identities", "probes"]
    )
    fig = plot_cmc(
        {n: m["cmc"] for n, m in result.identification.items()},
        title=f"CMC: {Path(str(source)).name}",
    )
    report.add_figure(fig, "cmc", caption="Cumulative match characteristic")
