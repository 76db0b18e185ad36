"""The whole evaluation run behind ``marginface eval``: checkpoints x pair sets (+ optional
identification) -> ``metrics.json``, ``report.md``, ``report.html`` (and ``figures/``).

Everything is loaded and checked first (checkpoints, then pair sets and the identification
folder), then computed, and only then written (each file via a temporary name and a rename),
so bad input leaves no output behind.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from marginface.evaluation.embed import EmbedOptions
from marginface.evaluation.metrics import FARS, far_key, jsonable_metrics
from marginface.evaluation.report import Report
from marginface.files import atomic_write_text, read_text, resolve_inside
from marginface.text import cut


@dataclass
class LoadedCheckpoint:
    """A model ready to evaluate, and where it came from."""

    name: str
    path: Path
    model: nn.Module
    info: dict[str, Any]

    @property
    def image_size(self) -> int:
        return int(self.info.get("image_size") or 112)


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` computed.

    ``verification[ckpt][pair_set]`` = metrics dict; ``scores[ckpt][pair_set]`` =
    ``(scores, issame)``; ``identification[ckpt]`` = identification metrics (if asked).
    """

    checkpoints: list[LoadedCheckpoint]
    pair_set_names: list[str]
    verification: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    identification: dict[str, dict[str, Any]] = field(default_factory=dict)
    identification_source: str | None = None
    #: ``ijb[ckpt]`` = IJB-B/C 1:1 metrics; ``ijb_scores[ckpt]`` = (template pair scores, labels)
    ijb: dict[str, dict[str, Any]] = field(default_factory=dict)
    ijb_scores: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def metrics_json(self) -> dict[str, Any]:
        """``{pair_set: metrics}`` for one checkpoint, ``{ckpt: {pair_set: metrics}}`` for
        several; identification results under the key ``"identification"``."""
        per: dict[str, dict[str, Any]] = {}
        for ckpt in self.checkpoints:
            entry: dict[str, Any] = {
                name: jsonable_metrics(m) for name, m in self.verification[ckpt.name].items()
            }
            if ckpt.name in self.identification:
                entry["identification"] = self.identification[ckpt.name]
            if ckpt.name in self.ijb:
                entry[self.ijb[ckpt.name]["target"]] = self.ijb[ckpt.name]
            per[ckpt.name] = entry
        if len(self.checkpoints) == 1:
            return per[self.checkpoints[0].name]
        return per


def _unique(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        candidate, k = name, 2
        while candidate in out:
            candidate, k = f"{name}-{k}", k + 1
        out.append(candidate)
    return out


def checkpoint_name(path: str | os.PathLike) -> str:
    """A short name for a checkpoint: its run folder's name (``runs/arcface/model.pt`` ->
    ``arcface``), else the file's stem. A run's best-validation model (its ``best/`` folder)
    keeps the run's name: ``runs/arcface/best`` -> ``arcface/best``."""
    p = Path(path)
    if p.is_dir():
        folder = p.resolve()
    elif p.name in ("model.pt", "checkpoint.pt") and p.resolve().parent.name:
        folder = p.resolve().parent
    else:
        return p.stem
    if folder.name == "best" and folder.parent.name:
        return f"{folder.parent.name}/best"
    return folder.name


def load_checkpoints(paths: Sequence[str | os.PathLike]) -> list[LoadedCheckpoint]:
    """Load every checkpoint (errors name the file: missing, unreadable, wrong architecture)."""
    from marginface.backbones.checkpoint import load_model

    if not paths:
        raise ValueError("give at least one checkpoint")
    names = _unique([checkpoint_name(p) for p in paths])
    out = []
    for name, path in zip(names, paths, strict=True):
        model, info = load_model(path)
        out.append(LoadedCheckpoint(name, Path(path), model, info))
    return out


def _read_list(list_file: str | os.PathLike, root: Path, index_of: dict[Path, int]) -> list[int]:
    """Items of a gallery / probe list: image paths relative to ``root`` (checked by
    :func:`~marginface.files.resolve_inside`) or absolute, each an image of the dataset (so never
    a path outside it)."""
    out = []
    lines = read_text(list_file, "image list").splitlines()
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        where = f"{list_file} line {number}"
        p = Path(entry).resolve() if Path(entry).is_absolute() else None
        p = p or resolve_inside(root, entry, where)  # a relative path: inside root
        if p not in index_of:
            raise ValueError(f"{where}: {cut(entry, 200)} is not an image of {root}")
        out.append(index_of[p])
    if not out:
        raise ValueError(f"{list_file} names no image")
    return out


def pair_set_names(specs: Sequence[str], names: Sequence[str]) -> list[str]:
    """The pair sets' own names (``lfw``, ``cfp_fp``), or their specs where two share a name
    (``synthetic:40x6,first=5000``); made unique in the end."""
    counts = {n: list(names).count(n) for n in names}
    return _unique([n if counts[n] == 1 else str(s) for s, n in zip(specs, names, strict=True)])


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "x"


def run_evaluation(
    checkpoints: Sequence[str | os.PathLike],
    pairs: Sequence[str],
    output: str | os.PathLike | None = None,
    options: EmbedOptions | None = None,
    *,
    max_pairs: int = 3000,
    n_folds: int | None = None,
    fold_seed: int | None = None,
    threshold_grid: str = "exact",
    identification: str | None = None,
    gallery_list: str | os.PathLike | None = None,
    probe_list: str | os.PathLike | None = None,
    ijb: str | os.PathLike | None = None,
    ijb_target: str | None = None,
    aligner: Any = None,
    title: str = "marginface evaluation",
) -> EvaluationResult:
    """Evaluate checkpoints on pair sets (and optionally identification on a folder).

    Args:
        checkpoints: run folders, ``model.pt`` or ``checkpoint.pt`` files.
        pairs: pair-set specs for ``marginface.data.open_pairs`` (``.bin``, ``pairs.txt``,
            dataset specs such as ``synthetic:50x6,first=1000``).
        output: folder for ``metrics.json``, ``report.md``, ``report.html`` and ``figures/``;
            None computes without writing.
        options: how every image is embedded: batch size, flip test, device, DataLoader
            workers, progress bars (:class:`~marginface.evaluation.embed.EmbedOptions`; None =
            its defaults).
        identification: a dataset spec (folder of identity sub-folders) for rank-1 / rank-5 /
            CMC; ``gallery_list`` / ``probe_list`` (text files of image paths relative to the
            folder) override the default split (first image of each identity = gallery).
        max_pairs: passed to ``open_pairs``.
        n_folds: folds of the accuracy; None: what a pairs file's header says (LFW's
            ``10 300``: 10), else 10. A header that disagrees with a given ``n_folds``, and a
            fold that holds one class only, are warnings (:func:`fold_warnings`).
        fold_seed: cut the folds from the pairs shuffled by this seed (None: in order, LFW's
            protocol); see :func:`marginface.evaluation.embed.fold_order`.
        ijb: an IJB-B or IJB-C folder (``meta/`` and ``loose_crop/``): 1:1 template
            verification as InsightFace's eval_ijbc.py computes it
            (:mod:`marginface.evaluation.ijb`); ``ijb_target`` IJBB or IJBC when the folder
            holds both.
        threshold_grid: ``exact`` (every distinct score) or ``insightface`` (InsightFace's
            grid of squared distances, to compare with papers); see
            :mod:`marginface.evaluation.metrics`.
        aligner: the images are raw photos: a :class:`marginface.data.detect.FaceAligner` that
            detects and aligns each face (to each checkpoint's image size). It should fall back
            to the whole photo when it finds no face (a pair must still be scored); those photos
            are counted in a warning (with ``options.workers`` 0). An aligner with a
            ``cache`` (:class:`marginface.data.detect_cache.DetectionCache`) detects each
            photo once for all the checkpoints (and, with a cache folder, for later runs).

    Returns: an :class:`EvaluationResult` (also written to ``output`` when given).
    """
    from marginface.data import open_dataset, open_pairs
    from marginface.evaluation.embed import evaluate_pairs
    from marginface.evaluation.identification import evaluate_identification

    options = EmbedOptions() if options is None else options
    if not pairs and identification is None and ijb is None:
        raise ValueError("give at least one pair set (--pairs), --identification or --ijb")
    if (gallery_list is None) != (probe_list is None):
        raise ValueError("give both a gallery list and a probe list, or neither")
    if gallery_list is not None and identification is None:
        raise ValueError("gallery/probe lists need an identification folder")
    loaded = load_checkpoints(checkpoints)
    sizes = sorted({c.image_size for c in loaded})
    aligners = {size: _aligner_for(aligner, size) for size in sizes}
    pair_sets = {
        size: [
            open_pairs(spec, image_size=size, max_pairs=max_pairs, aligner=aligners[size])
            for spec in pairs
        ]
        for size in sizes
    }
    names = pair_set_names(pairs, [p.name for p in pair_sets[sizes[0]]])
    folds = {
        name: folds_of(pair_set, n_folds)
        for name, pair_set in zip(names, pair_sets[sizes[0]], strict=True)
    }
    id_sets = {}
    split: tuple[list[int], list[int]] | None = None
    if identification is not None:
        id_sets = {
            size: open_dataset(identification, image_size=size, aligner=aligners[size])
            for size in sizes
        }
        if gallery_list is not None:
            ds = id_sets[sizes[0]]
            if not hasattr(ds, "paths"):
                raise ValueError("gallery/probe lists need a folder dataset (with image paths)")
            root = Path(identification)
            index_of = {Path(p).resolve(): i for i, p in enumerate(ds.paths)}
            split = (
                _read_list(gallery_list, root, index_of),
                _read_list(probe_list, root, index_of),
            )
    ijb_meta = None
    if ijb is not None:
        from marginface.evaluation.ijb import read_ijb_meta

        ijb_meta = read_ijb_meta(ijb, ijb_target)  # checked before any work
    result = EvaluationResult(
        checkpoints=loaded,
        pair_set_names=names,
        identification_source=identification,
        settings={
            "flip": options.flip,
            "batch_size": options.batch_size,
            "device": str(options.device),
            "max_pairs": max_pairs,
            "n_folds": n_folds if n_folds is not None else _one_value(folds),
            "folds": folds,
            "fold_seed": fold_seed,
            "pairs": list(pairs),
            "identification": identification,
            "gallery_list": None if gallery_list is None else str(gallery_list),
            "probe_list": None if probe_list is None else str(probe_list),
            "title": title,
            "detect": aligner is not None,
            "detect_cache": _cache_folder(aligner),
            "threshold_grid": threshold_grid,
            "ijb": None if ijb is None else str(ijb),
        },
    )
    for name, pair_set in zip(names, pair_sets[sizes[0]] if sizes else [], strict=True):
        result.warnings += small_set_warnings([name], [pair_set], folds[name])
        result.warnings += fold_warnings(name, pair_set, folds[name], n_folds, fold_seed)
    for ckpt in loaded:
        result.verification[ckpt.name] = {}
        result.scores[ckpt.name] = {}
        for name, pair_set in zip(names, pair_sets[ckpt.image_size], strict=True):
            metrics, scores = evaluate_pairs(
                ckpt.model,
                pair_set,
                options,
                n_folds=folds[name],
                threshold_grid=threshold_grid,
                fold_seed=fold_seed,
            )
            result.verification[ckpt.name][name] = metrics
            result.scores[ckpt.name][name] = (scores, np.asarray(pair_set.issame, dtype=bool))
        if ijb_meta is not None:
            from marginface.evaluation.ijb import evaluate_ijb

            metrics, scores, labels = evaluate_ijb(
                ckpt.model, ijb_meta, image_size=ckpt.image_size, options=options
            )
            result.ijb[ckpt.name] = metrics
            result.ijb_scores[ckpt.name] = (scores, labels)
        if identification is not None:
            ds = id_sets[ckpt.image_size]
            result.identification[ckpt.name] = evaluate_identification(
                ckpt.model,
                ds,
                gallery_indices=split[0] if split else None,
                probe_indices=split[1] if split else None,
                options=options,
            )
    for size in sizes:
        for name, pair_set in zip(names, pair_sets[size], strict=True):
            bad = getattr(pair_set.images, "num_bad", 0)
            if bad:
                result.warnings.append(
                    f"pair set {name}: {bad} unreadable images were replaced by readable ones"
                )
        if identification is not None and getattr(id_sets[size], "num_bad", 0):
            result.warnings.append(
                f"identification set: {id_sets[size].num_bad} unreadable images replaced"
            )
    cache = getattr(aligner, "cache", None)
    if cache is not None and cache.write_error is not None:
        result.warnings.append(
            f"the detection cache {cache.root} could not be written ({cache.write_error}): the "
            "faces found were kept for this run only"
        )
    misses = sum(a.misses for a in aligners.values() if a is not None)
    if misses:
        result.warnings.append(
            f"the detector found no face in {misses} photos; they were used whole (resized)"
        )
    if output is not None:
        write_evaluation(result, output)
    return result


def folds_of(pair_set: Any, n_folds: int | None) -> int:
    """The folds of a pair set's accuracy: ``n_folds`` when given, else its file's header's
    folds when it has two or more, else 10."""
    if n_folds is not None:
        return n_folds
    header = getattr(pair_set, "header", None)
    return header[0] if header is not None and header[0] >= 2 else 10


def _one_value(folds: dict[str, int]) -> int | None:
    """The folds every pair set shares (10 when there is none), or None when they differ."""
    values = set(folds.values()) or {10}
    return values.pop() if len(values) == 1 else None


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def fold_warnings(
    name: str,
    pair_set: Any,
    folds: int,
    n_folds: int | None = None,
    fold_seed: int | None = None,
) -> list[str]:
    """Warnings about the accuracy's folds of one pair set, each with what to do:

    - its file's header (``folds pairs-per-fold``, LFW style) says other folds than the
      ``n_folds`` asked for, or more or fewer pairs than the file holds;
    - a fold holds genuine pairs only, or impostor pairs only (a list ordered by class, cut in
      order): its threshold is chosen on folds unlike it and the accuracy's +- means nothing.
    """
    from marginface.evaluation.embed import fold_order
    from marginface.evaluation.metrics import fold_indices

    out = []
    issame = np.asarray(pair_set.issame, dtype=bool)
    n = len(issame)
    header = getattr(pair_set, "header", None)
    if header is not None:
        k, per = header
        if n_folds is not None and k >= 2 and k != n_folds:
            out.append(
                f"pair set {name}: its header says {k} folds, evaluated in --folds {n_folds} "
                f"as asked (leave --folds out to follow the header)"
            )
        if 2 * k * per != n:
            out.append(
                f"pair set {name}: its header says {k} fold(s) of {per} genuine + {per} "
                f"impostor pairs ({2 * k * per}), the file holds {n} pairs: it is not the "
                "file the header was written for (a cut or edited list?)"
            )
    if n < folds:
        return out
    order = fold_order(n, fold_seed)
    parts = fold_indices(n, max(2, folds))
    genuine = [i + 1 for i, f in enumerate(parts) if issame[order[f]].all()]
    impostor = [i + 1 for i, f in enumerate(parts) if not issame[order[f]].any()]
    if genuine or impostor:
        held = "; ".join(
            f"fold(s) {_ranges(which)} only {kind} pairs"
            for which, kind in ((genuine, "genuine"), (impostor, "impostor"))
            if which
        )
        how = "in file order" if fold_seed is None else f"shuffled by --fold-seed {fold_seed}"
        out.append(
            f"pair set {name}: of its {len(parts)} folds ({how}), {held}: each fold's threshold "
            "is chosen on folds unlike it, so the accuracy and its +- mean nothing. Use the "
            "official pairs file (each of its folds holds both), or cut the folds from the "
            "pairs shuffled: --fold-seed 0"
        )
    return out


def small_set_warnings(names: Sequence[str], pair_sets: Sequence, n_folds: int) -> list[str]:
    """Warnings for pair sets too small for their numbers to mean anything: fewer than 2 pairs
    per fold, or no genuine or no impostor pair (then accuracy and AUC are degenerate)."""
    out = []
    for name, pair_set in zip(names, pair_sets, strict=True):
        issame = np.asarray(pair_set.issame, dtype=bool)
        n, genuine = len(issame), int(issame.sum())
        if n < 2 * n_folds:
            out.append(
                f"pair set {name}: {n} pairs for {n_folds} folds (fewer than 2 a fold): its "
                "accuracy, AUC and EER are not meaningful"
            )
        if genuine == 0 or genuine == n:
            kind = "impostor" if genuine == 0 else "genuine"
            out.append(f"pair set {name}: all {n} pairs are {kind}: AUC and EER are undefined")
    return out


def _cache_folder(aligner: Any) -> str | None:
    cache = getattr(aligner, "cache", None)
    return None if cache is None or cache.root is None else str(cache.root.parent)


def _aligner_for(aligner: Any, size: int) -> Any:
    """A copy of ``aligner`` (sharing its detector) that aligns to ``size``, or None."""
    if aligner is None:
        return None
    import copy

    out = copy.copy(aligner)
    out.image_size = size
    out.misses = 0
    out.missed = set()
    return out


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


def _folds_text(settings: dict[str, Any]) -> str:
    """How the accuracy's folds were cut, for the report: ``10 folds in order``."""
    k = settings.get("n_folds", 10)
    if k is None:
        k = "per pair set: " + ", ".join(f"{n} {v}" for n, v in settings["folds"].items()) + ","
    seed = settings.get("fold_seed")
    return f"{k} folds " + ("in order" if seed is None else f"of the pairs shuffled by seed {seed}")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def build_report(result: EvaluationResult) -> Report:
    """The evaluation report: checkpoints, verification table, ROC curves (overlaid per pair
    set), score histograms, accuracy overlay of several checkpoints, identification + CMC."""
    from marginface.evaluation.plots import (
        plot_cmc,
        plot_metric_bars,
        plot_roc,
        plot_score_histograms,
    )

    s = result.settings
    report = Report(
        s.get("title", "marginface evaluation"),
        intro=(
            f"{len(result.checkpoints)} checkpoint(s) on {len(result.pair_set_names)} pair "
            f"set(s). Cosine similarity of L2-normalised embeddings"
            f"{' with flip test' if s.get('flip', True) else ' (no flip test)'}; accuracy is "
            f"LFW-style: {_folds_text(s)}, threshold chosen on the other "
            f"folds (mean +- std"
            + (
                "; thresholds from InsightFace's grid of squared distances 0, 0.01, ..., 3.99"
                if s.get("threshold_grid") == "insightface"
                else "; every distinct score tried as threshold"
            )
            + "). TAR@FAR only where the impostor pairs resolve the FAR."
        ),
    )
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
        _verification_section(report, result, plot_roc, plot_score_histograms, plot_metric_bars)
    if result.ijb:
        _ijb_section(report, result)
    if result.identification:
        report.add_section("Identification")
        report.add_text(
            f"Closed-set 1:N on {result.identification_source}: gallery = "
            f"{'the given list' if s.get('gallery_list') else 'first image of each identity'}, "
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
            title=f"CMC: {Path(str(result.identification_source)).name}",
        )
        report.add_figure(fig, "cmc", caption="Cumulative match characteristic")
    if result.warnings:
        report.add_section("Warnings")
        for w in result.warnings:
            report.add_text(w)
    report.add_section("Settings")
    report.add_code(json.dumps(s, indent=2))
    return report


def _verification_section(report, result, plot_roc, plot_score_histograms, plot_metric_bars):
    fars = [
        far
        for far in sorted(FARS, reverse=True)
        if any(far in m["tar_at_far"] for per in result.verification.values() for m in per.values())
    ]
    several = len(result.checkpoints) > 1
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
    report.add_section("Verification")
    report.add_table(
        rows,
        headers=["checkpoint", "pair set", "pairs", "accuracy %", "best threshold", "AUC", "EER %"]
        + [f"TAR@FAR={far_key(f)} %" for f in fars],
    )
    used: list[str] = ["roc_all", "accuracy"]

    def figure_name(base: str) -> str:
        used.append(_unique([*used, base])[-1])
        return used[-1]

    for name in result.pair_set_names:
        curves = {c.name: result.scores[c.name][name] for c in result.checkpoints}
        fig = plot_roc(curves, title=f"ROC: {name}")
        report.add_figure(
            fig, figure_name(f"roc_{_sanitize(name)}"), caption=f"ROC on {name} (log FAR axis)"
        )
    if several and len(result.pair_set_names) > 1:
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
    if several:
        acc = {
            c.name: {n: result.verification[c.name][n]["accuracy"] for n in result.pair_set_names}
            for c in result.checkpoints
        }
        std = {
            c.name: {
                n: result.verification[c.name][n]["accuracy_std"] for n in result.pair_set_names
            }
            for c in result.checkpoints
        }
        fig = plot_metric_bars(
            acc,
            "accuracy",
            errors=std,
            title=f"Verification accuracy ({_folds_text(result.settings)}: mean +- std)",
        )
        report.add_figure(fig, "accuracy", caption="Checkpoints side by side")
    report.add_section("Score distributions", level=3)
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
