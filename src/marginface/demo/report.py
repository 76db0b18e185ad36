"""The demo's report: ``DIR/report.md``, ``DIR/report.html`` (self-contained) and
``DIR/metrics.json``, assembled with :class:`marginface.evaluation.report.Report`."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marginface.demo.config import DemoConfig
from marginface.demo.runner import RunResult, ToyResult
from marginface.evaluation.angles import nearer_own_share
from marginface.evaluation.metrics import far_key
from marginface.evaluation.report import Report
from marginface.files import atomic_write_text
from marginface.training.verdict import CONVERGED_SHARE, is_trained

FARS = (1e-3, 1e-4)
BASELINE = "softmax"


def run_summary(r: RunResult) -> dict[str, Any]:
    """The numbers of one run (floats; None where not resolvable)."""
    m = r.metrics
    tar = {far_key(float(k)): float(v) for k, v in m["tar_at_far"].items()}
    return {
        "seed": r.seed,
        "accuracy": float(m["accuracy"]),
        "accuracy_std": float(m["accuracy_std"]),
        "tar_at_far": tar,
        "eer": float(m["eer"]),
        "auc": float(m["auc"]),
        "best_threshold": float(m["best_threshold"]),
        "train_time_s": r.train_time_s,
        "train_cpu_s": r.train_cpu_s,
        "eval_time_s": r.eval_time_s,
        "steps": r.steps,
        "final_loss": float(r.history[-1, 1]) if len(r.history) else None,
        "angle_own_mean_deg": float(np.mean(r.angles_own)),
        "angle_other_mean_deg": float(np.mean(r.angles_other)),
        "nearer_own_share": nearer_own_share(r.angles_own, r.angles_other),
        "run_dir": str(r.run_dir),
    }


def _flat(summary: Mapping[str, Any]) -> dict[str, float]:
    out = {
        k: summary[k]
        for k in ("accuracy", "eer", "auc", "train_time_s", "train_cpu_s",
                  "angle_own_mean_deg", "angle_other_mean_deg", "nearer_own_share")
    }  # fmt: skip
    for far in FARS:
        out[f"tar@{far_key(far)}"] = summary["tar_at_far"].get(far_key(far))
    return out


def aggregate(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Per-seed summaries plus their mean and std (population std; 0 for one seed)."""
    seeds = [run_summary(r) for r in runs]
    flats = [_flat(s) for s in seeds]
    mean, std = {}, {}
    for key in flats[0]:
        values = [f[key] for f in flats]
        if any(v is None for v in values):
            mean[key] = std[key] = None
        else:
            mean[key], std[key] = float(np.mean(values)), float(np.std(values))
    return {"head_kwargs": runs[0].head_kwargs, "runs": seeds, "mean": mean, "std": std}


def _cell(mean: float | None, std: float | None, n: int, fmt: str = "{:.4f}") -> str:
    if mean is None:
        return "n/a"
    return fmt.format(mean) if n == 1 else f"{fmt.format(mean)} ± {fmt.format(std)}"


def comparison_rows(heads: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the comparison table (mean ± std over seeds)."""
    headers = ["head", "10-fold accuracy", "TAR@FAR=1e-3", "TAR@FAR=1e-4", "EER", "AUC",
               "nearer own centre", "train time (s)",
               "angle own / nearest other (°)"]  # fmt: skip
    rows = []
    for head, agg in heads.items():
        mu, sd, n = agg["mean"], agg["std"], len(agg["runs"])
        rows.append([
            head,
            _cell(mu["accuracy"], sd["accuracy"], n),
            _cell(mu["tar@1e-03"], sd["tar@1e-03"], n),
            _cell(mu["tar@1e-04"], sd["tar@1e-04"], n),
            _cell(mu["eer"], sd["eer"], n),
            _cell(mu["auc"], sd["auc"], n),
            _cell(mu["nearer_own_share"], sd["nearer_own_share"], n, "{:.1%}"),
            _cell(mu["train_time_s"], sd["train_time_s"], n, "{:.0f}"),
            f"{mu['angle_own_mean_deg']:.1f} / {mu['angle_other_mean_deg']:.1f}",
        ])  # fmt: skip
    return headers, rows


def verdicts(
    runs: Mapping[str, Sequence[RunResult]],
    issame: np.ndarray,
    groups: np.ndarray,
    replicates: int = 1000,
) -> dict[str, dict[str, Any]]:
    """For every head but the baseline, at each FAR: its TAR minus plain softmax's, with the
    95% interval of the paired bootstrap over the held-out identities (seeds paired and
    averaged), and the verdict the interval alone gives: ahead, behind or within noise."""
    from marginface.evaluation.bootstrap import paired_bootstrap

    if BASELINE not in runs:
        return {}
    base = np.stack([r.scores for r in runs[BASELINE]])
    out: dict[str, dict[str, Any]] = {}
    for head, rs in runs.items():
        if head == BASELINE:
            continue
        mine = np.stack([r.scores for r in rs])
        n = min(len(mine), len(base))
        out[head] = {}
        fars = [f for f in FARS if f * int((~issame).sum()) >= 1]  # resolvable ones
        if not fars:
            continue
        by_far = paired_bootstrap(mine[:n], base[:n], issame, groups, fars, replicates)
        for far, b in by_far.items():
            out[head][f"tar@{far_key(far)}"] = {
                k: b[k] for k in ("difference", "ci_low", "ci_high", "verdict")
            } | {"tar": b["a"], "softmax_tar": b["b"]}
    return out


def verdict_lines(table: Mapping[str, Mapping[str, Any]], identities: int) -> list[str]:
    """One line per head and FAR, the interval and the verdict."""
    lines = []
    for head, by_far in table.items():
        for key, v in by_far.items():
            far = key.split("@")[1]
            lines.append(
                f"- {head} vs softmax, TAR@FAR={far}: {v['tar']:.4f} vs {v['softmax_tar']:.4f}, "
                f"difference {v['difference']:+.4f}, 95% interval [{v['ci_low']:+.4f}, "
                f"{v['ci_high']:+.4f}] (paired bootstrap over the {identities} held-out "
                f"identities): **{v['verdict']}**"
            )
    return lines


def convergence_lines(heads: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Did every run train: the share of training samples nearer their own centre."""
    lines = []
    for head, agg in heads.items():
        shares = [r["nearer_own_share"] for r in agg["runs"]]
        low = min(shares)
        state = "trained" if is_trained(low) else "NOT trained to the end"
        lines.append(
            f"- {head}: {', '.join(f'{100 * x:.1f}%' for x in shares)} of the training samples "
            f"nearer their own class centre than any other ({state}; the demo asks "
            f">= {100 * CONVERGED_SHARE:.0f}%)"
        )
    return lines


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (for docs and the console)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON-safe: NaN / inf become None, numpy scalars plain floats."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(path: Path, payload: dict[str, Any]) -> None:
    """``metrics.json`` (NaN-free; written to a temporary file, then renamed)."""
    atomic_write_text(path, json.dumps(_finite(payload), indent=2) + "\n")


def toy_summary(toys: Sequence[ToyResult]) -> dict[str, dict[str, Any]]:
    """metrics.json entries of the 2-D / 3-D toy runs."""
    from marginface.demo.sphere_plots import toy_statistics

    out: dict[str, dict[str, Any]] = {}
    for t in toys:
        out.setdefault(t.head, {})[f"{t.dim}d"] = {
            "final_loss": t.final_loss,
            "train_time_s": t.train_time_s,
            "head_kwargs": t.head_kwargs,
            **toy_statistics(t.features, t.labels),
        }
    return out


def build_report(
    cfg: DemoConfig,
    heads: Mapping[str, Mapping[str, Any]],
    figures: Sequence[tuple[str, Any, str]],
    section_of: Mapping[str, str],
    intro: str,
    deviations: Sequence[str],
    timings: Mapping[str, float],
    pairs_info: Mapping[str, int],
    verdict_table: Mapping[str, Mapping[str, Any]] | None = None,
    machine: Mapping[str, Any] | None = None,
) -> Report:
    """The report: settings, the table, verdicts, then the figures by section.

    ``figures``: (name, matplotlib Figure or PNG bytes, caption) in order; ``section_of``:
    figure name -> section title (sections appear in the order first met).
    """
    report = Report("marginface demo: margin heads compared on synthetic faces", intro=intro)
    report.add_section("Comparison on held-out identities")
    headers, rows = comparison_rows(heads)
    n_seeds = max(len(a["runs"]) for a in heads.values())
    seeds_text = "one seed (0)" if n_seeds == 1 else f"mean ± std over seeds 0..{n_seeds - 1}"
    report.add_table(
        rows,
        headers=headers,
        caption=(
            f"{pairs_info['num_pairs']} pairs of {pairs_info['identities']} unseen identities "
            f"({pairs_info['num_genuine']} genuine, {pairs_info['num_impostor']} impostor); "
            f"{seeds_text}. Angles: mean over training samples."
        ),
    )
    lines = verdict_lines(verdict_table or {}, pairs_info["identities"])
    if lines:  # blank lines between them: one paragraph each in the HTML
        if cfg.quick:
            report.add_text(
                "This is `--quick`, a smoke run: too short to compare the heads. A verdict below "
                "holds only where its own interval decides it (ahead / behind); "
                "'within noise' says nothing."
            )
        report.add_text("\n\n".join(lines))
    report.add_text("Training:\n\n" + "\n\n".join(convergence_lines(heads)))
    report.add_section("Settings")
    report.add_code(settings_text(cfg, heads))
    if deviations:
        report.add_text("Departures from the heads' usual defaults:\n\n" + "\n\n".join(deviations))
        if any("s=auto" in line for line in deviations):
            from marginface.demo.config import SCALE_REASON

            report.add_text(SCALE_REASON)
        if any("2-D/3-D toy" in line for line in deviations):
            from marginface.demo.config import TOY_OVERRIDES_REASON

            report.add_text(TOY_OVERRIDES_REASON)
    current = None
    for name, fig, caption in figures:
        section = section_of.get(name, "Figures")
        if section != current:
            report.add_section(section)
            current = section
        if isinstance(fig, bytes):
            report.add_png(fig, name, caption)
        else:
            report.add_figure(fig, name, caption)
    report.add_section("Timings")
    where = ""
    if machine:
        where = (
            f"{machine['cpu_cores']} CPU cores; {machine['workers']} training run(s) side by "
            f"side, {machine['torch_threads']} torch thread(s) each"
        )
    report.add_table(
        [[k, f"{v:.1f}"] for k, v in timings.items()],
        headers=["part", "seconds (wall)"],
        caption=where,
    )
    return report


def optimizer_text(cfg: DemoConfig, lr: float) -> str:
    """``AdamW lr 0.002 weight decay 0.05`` / ``SGD lr 0.1 momentum 0.9 weight decay ...``."""
    if cfg.optimizer == "sgd":
        return f"SGD lr {lr:g} momentum {cfg.momentum:g} weight decay {cfg.weight_decay:g}"
    return f"AdamW lr {lr:g} weight decay {cfg.weight_decay:g}"


def _toy_schedule_text() -> str:
    from marginface.demo.toy import ToySchedule

    t = ToySchedule()
    return (
        f"{t.steps} full-batch AdamW steps, lr {t.lr:g} (warm-up {t.warmup_steps}, cosine), "
        f"margin warm-up {t.margin_warmup_steps} steps"
    )


def settings_text(cfg: DemoConfig, heads: Mapping[str, Mapping[str, Any]]) -> str:
    """The settings block of the report."""
    lines = [
        f"training data   {cfg.train_spec}  ({cfg.image_size}x{cfg.image_size} px, random flips)",
        f"held-out data   {cfg.test_spec}  (all genuine pairs up to {cfg.max_pairs}, "
        f"{cfg.impostor_pairs} impostor pairs)",
        f"backbone        {cfg.backbone}, embedding {cfg.embedding_size}",
        f"schedule        {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"{optimizer_text(cfg, cfg.lr)}, {cfg.scheduler} after {cfg.warmup_epochs:g} warm-up "
        "epoch(s)",
        f"toy             {cfg.toy_spec}: an MLP on the images' 32 principal components, "
        f"{_toy_schedule_text()}, embedding " + " and ".join(str(d) for d in cfg.toy_dims),
        f"device          {cfg.device}",
    ]
    for head, agg in heads.items():
        kw = ", ".join(f"{k}={v}" for k, v in agg["head_kwargs"].items()) or "-"
        lines.append(f"head {head:<10} {kw}")
    return "\n".join(lines)
