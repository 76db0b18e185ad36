"""``run_demo(config)``: render the data once, train and evaluate every head (and seed), train
the 2-D / 3-D toys, and write the report. The real main of ``marginface demo``."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginface.data.formats.verification import generate_pairs
from marginface.demo.cache import CachedFaces, render_dataset
from marginface.demo.config import DemoConfig
from marginface.demo.parallel import run_jobs
from marginface.demo.progress import DemoProgress
from marginface.demo.runner import RunResult, ToyResult, run_head, steps_of
from marginface.demo.toy import train_toy

#: torch threads of the 2-D / 3-D toy stage (see :func:`_run`)
TOY_THREADS = 1


@dataclass
class DemoOutcome:
    """What :func:`run_demo` returns: the written files and the numbers."""

    output: Path
    report_md: Path
    report_html: Path
    metrics_json: Path
    figures: list[Path]
    table: str
    metrics: dict[str, Any]


def _render_all(cfg: DemoConfig) -> dict[str, CachedFaces]:
    """Render the training, held-out and toy sets once (a progress bar over all images)."""
    from marginface.data import open_dataset

    specs = {"train": cfg.train_spec, "test": cfg.test_spec}
    if cfg.toy_dims:
        specs["toy"] = cfg.toy_spec
    sizes = {k: len(open_dataset(s, image_size=cfg.image_size)) for k, s in specs.items()}
    from tqdm import tqdm

    out = {}
    with tqdm(
        total=sum(sizes.values()), desc="render images", unit="img", disable=not cfg.progress
    ) as bar:
        for key, spec in specs.items():
            out[key] = render_dataset(spec, cfg.image_size, cfg.render_workers, bar.update)
    return out


def deviations_of(cfg: DemoConfig, num_classes: int | None = None) -> list[str]:
    """Human-readable list of the departures from the heads' usual defaults (with
    ``num_classes``, the scale s = auto of every cosine head that keeps it, and its value)."""
    from marginface.heads import head_hparams
    from marginface.heads.scale import resolve_scale

    lines = []
    for head in cfg.heads if num_classes else []:
        _, choice = resolve_scale(head, 1, num_classes, cfg.head_kwargs.get(head, {}))
        if choice.rule is not None:  # s = auto was applied
            lines.append(
                f"- comparison, {head}: s=auto = {choice.value:.2f} for {num_classes} classes "
                f"(usual {head_hparams(head)['s']})"
            )
    for label, table in (("comparison", cfg.head_kwargs), ("2-D/3-D toy", cfg.toy_head_kwargs)):
        for head, kwargs in table.items():
            if head not in cfg.heads:
                continue
            usual = head_hparams(head)
            changed = ", ".join(f"{k}={v} (usual {usual.get(k)})" for k, v in kwargs.items())
            if changed:
                lines.append(f"- {label}, {head}: {changed}")
    return lines


def run_demo(cfg: DemoConfig) -> DemoOutcome:
    """Run the whole demo described by ``cfg`` and write ``cfg.output``/report.*, metrics.json.

    Uses ``cfg.torch_threads()`` torch CPU threads while it runs (restored afterwards).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads())
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def check_heads(cfg: DemoConfig) -> None:
    """Build every listed head once with its demo hyperparameters (main and toy runs), so a
    bad name or value is reported before any head trains."""
    from marginface.heads import create_head, list_heads

    unknown = [h for h in cfg.heads if h not in list_heads()]
    if unknown:
        raise ValueError(
            f"unknown head(s) {', '.join(unknown)}; valid heads: {', '.join(list_heads())}"
        )
    for head in cfg.heads:
        for kwargs in (cfg.head_kwargs.get(head, {}), cfg.toy_head_kwargs.get(head, {})):
            try:
                create_head(head, 2, 2, **kwargs)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--head-kwargs for {head}: {exc}") from None


def _run(cfg: DemoConfig) -> DemoOutcome:
    from marginface.files import check_writable_dir

    check_heads(cfg)
    output = check_writable_dir(cfg.output, "--output")
    output.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    data = _render_all(cfg)
    timings["render images"] = time.perf_counter() - t0
    train_set, test_set = data["train"], data["test"]
    pairs, issame = generate_pairs(
        test_set.labels, max_pairs=cfg.max_pairs, seed=0, impostors=cfg.impostor_pairs
    )

    main_images = steps_of(len(train_set), cfg.batch_size, cfg.epochs) * cfg.batch_size
    total = main_images * cfg.seeds * len(cfg.heads)
    progress = DemoProgress(total, enabled=cfg.progress)
    progress.write(
        f"demo: {len(cfg.heads)} heads x {cfg.seeds} seed(s) on {cfg.train_spec} "
        f"({len(train_set)} images), held-out {cfg.test_spec} ({len(issame)} pairs); "
        f"2-D/3-D toy on {cfg.toy_spec if cfg.toy_dims else '-'}"
    )

    runs: dict[str, list[RunResult]] = {h: [] for h in cfg.heads}
    t0 = time.perf_counter()
    jobs = [(seed, head) for seed in range(cfg.seeds) for head in cfg.heads]
    workers, threads = cfg.parallel_workers(len(jobs)), cfg.torch_threads(len(jobs))
    context = (cfg, train_set, test_set, pairs, issame)
    for (seed, head), r in zip(
        jobs, run_jobs(_train_job, context, jobs, workers, progress, threads), strict=True
    ):
        runs[head].append(r)
        tar = r.metrics["tar_at_far"].get(1e-3)
        progress.write(
            f"  {head} seed {seed}: accuracy {r.metrics['accuracy']:.4f}, "
            f"TAR@1e-3 {'n/a' if tar is None else f'{tar:.4f}'}, EER {r.metrics['eer']:.4f}"
        )
    timings["train + evaluate heads"] = time.perf_counter() - t0

    toys: list[ToyResult] = []
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # The toy's operations are tiny (an MLP on a few hundred images): one thread gives the
    # same numbers as two, and with more threads than free cores each of a step's few dozen
    # parallel regions waits for a descheduled thread (two threads 5-9x slower than one on
    # the loaded 2-core machine: docs/demo.md, benchmarks/toy_threads.py).
    torch.set_num_threads(TOY_THREADS)
    try:
        for dim in cfg.toy_dims:
            for head in cfg.heads:
                kwargs = cfg.toy_head_kwargs.get(head, {})
                toy = train_toy(data["toy"], head, kwargs, dim, seed=0)
                toys.append(toy)
                progress.write(f"  {head} {dim}-D toy: final loss {toy.final_loss:.4f}")
    finally:
        torch.set_num_threads(threads)
    timings["2-D/3-D toys"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    outcome = _write(cfg, data, runs, toys, pairs, issame, timings, t_start, cpu_start)
    progress.write(f"wrote {outcome.report_html}, {outcome.report_md}, {outcome.metrics_json}")
    return outcome


def _train_job(context: tuple, job: tuple[int, str], progress) -> RunResult:
    """One run (train + evaluate one head with one seed); a job of :func:`run_jobs`."""
    cfg, train_set, test_set, pairs, issame = context
    seed, head = job
    return run_head(cfg, head, seed, train_set, test_set, pairs, issame, progress)


def _write(
    cfg: DemoConfig,
    data: dict[str, CachedFaces],
    runs: dict[str, list[RunResult]],
    toys: list[ToyResult],
    pairs: np.ndarray,
    issame: np.ndarray,
    timings: dict[str, float],
    t_start: float,
    cpu_start: float,
) -> DemoOutcome:
    from marginface.demo.figures import (
        contact_sheet_png,
        plot_angle_distributions,
        plot_training_curves,
    )
    from marginface.demo.report import (
        aggregate,
        build_report,
        comparison_rows,
        markdown_table,
        toy_summary,
        verdicts,
        write_metrics,
    )
    from marginface.demo.sphere_plots import plot_circle_panels, plot_sphere_panels
    from marginface.evaluation.plots import plot_roc, plot_score_histograms

    t0 = time.perf_counter()
    heads = {h: aggregate(rs) for h, rs in runs.items()}
    first = {h: rs[0] for h, rs in runs.items()}
    figures: list[tuple[str, Any, str]] = []
    section: dict[str, str] = {}

    def add(name: str, fig: Any, caption: str, where: str) -> None:
        figures.append((name, fig, caption))
        section[name] = where

    seed_note = " (seed 0)" if cfg.seeds > 1 else ""
    add("roc", plot_roc({h: (r.scores, issame) for h, r in first.items()},
                        title=f"ROC on held-out identities{seed_note}"),
        "ROC curves of every head, overlaid (log FAR axis)", "Verification")  # fmt: skip
    for h, r in first.items():
        fig = plot_score_histograms(
            r.scores, issame, threshold=float(r.metrics["best_threshold"]),
            title=f"{h}: genuine vs impostor cosine scores{seed_note}", figsize=(5.5, 3.4),
        )  # fmt: skip
        add(f"scores-{h}", fig, f"{h}: score histograms of the held-out pairs", "Verification")
    add("training-curves", plot_training_curves(runs), "training loss against step",
        "Training")  # fmt: skip
    add("angles", plot_angle_distributions(first),
        "angle of each training sample to its own class centre vs the nearest other centre",
        "Angles to the class centres")  # fmt: skip
    toy_title = "The classic picture: a few identities in a 2-D and a 3-D embedding"
    for dim, plot in ((2, plot_circle_panels), (3, plot_sphere_panels)):
        chosen = [t for t in toys if t.dim == dim]
        if chosen:
            add(f"toy-{dim}d", plot(chosen), f"{dim}-D embedding, one panel per head", toy_title)
    from marginface.demo.theory import plot_decision_boundaries, plot_target_logits

    theory = "The margins in theory"
    add(
        "target-logits",
        plot_target_logits(),
        "the target logit against the angle theta to the class centre, per loss",
        theory,
    )
    boundary_caption = "binary decision boundaries of each loss in the (theta1, theta2) plane"
    add("decision-boundaries", plot_decision_boundaries(), boundary_caption, theory)
    sheet_caption = "training data: rows are identities, columns images of one identity"
    add("contact-sheet", contact_sheet_png(data["train"]), sheet_caption, "The data")

    headers, rows = comparison_rows(heads)
    table = markdown_table(headers, rows)
    t1 = time.perf_counter()
    groups = data["test"].labels[pairs[:, 0]]  # a pair belongs to its first face's identity
    verdict_table = verdicts(runs, issame, groups, cfg.bootstrap_replicates)
    timings["bootstrap intervals"] = time.perf_counter() - t1
    timings["report"] = time.perf_counter() - t0 - timings["bootstrap intervals"]
    timings["total"] = time.perf_counter() - t_start
    cpu_total = time.process_time() - cpu_start
    pairs_info = {
        "num_pairs": int(len(issame)),
        "num_genuine": int(issame.sum()),
        "num_impostor": int((~issame).sum()),
        "identities": int(data["test"].num_classes),
    }
    deviations = deviations_of(cfg, int(data["train"].num_classes))
    machine = {
        "cpu_cores": os.cpu_count(),
        "workers": cfg.parallel_workers(cfg.seeds * len(cfg.heads)),
        "torch_threads": cfg.torch_threads(cfg.seeds * len(cfg.heads)),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    intro = (
        "Every head below was trained with the same backbone, data, schedule and seed; only the "
        "head differs. Verification uses identities never seen in training. Reproduce with "
        f"`marginface demo{' --quick' if cfg.quick else ''} --heads {','.join(cfg.heads)} "
        f"--seeds {cfg.seeds}`."
    )
    report = build_report(
        cfg, heads, figures, section, intro, deviations, timings, pairs_info, verdict_table, machine
    )
    written = report.write(cfg.output)
    metrics = {
        "config": cfg.to_dict(),
        "heads": heads,
        "verdicts": verdict_table,
        "toy": toy_summary(toys),
        "pairs": pairs_info,
        "deviations": deviations,
        "timings_s": dict(timings),
        "cpu_time_s": cpu_total,
        "machine": machine,
        "figures": [str(p) for p in written["figures"]],
    }
    metrics_path = Path(cfg.output) / "metrics.json"
    write_metrics(metrics_path, metrics)
    return DemoOutcome(
        output=Path(cfg.output),
        report_md=written["markdown"],
        report_html=written["html"],
        metrics_json=metrics_path,
        figures=list(written["figures"]),
        table=table,
        metrics=metrics,
    )
