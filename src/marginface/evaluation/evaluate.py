"""The evaluation run behind ``marginface eval``: checkpoints x pair sets (+ optional
identification and IJB) as an :class:`~marginface.evaluation.config.EvalConfig` says ->
an :class:`EvaluationResult` (:mod:`marginface.evaluation.run_report` writes it).

Everything is loaded and checked first (checkpoints, then pair sets, the identification
folder and IJB's lists), then computed; the report is written only after that (each file via a
temporary name and a rename), so bad input leaves no output behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from marginface.evaluation.config import EvalConfig
from marginface.evaluation.embed import EmbedOptions
from marginface.evaluation.folds import fold_warnings, folds_of, small_set_warnings
from marginface.evaluation.metrics import jsonable_metrics
from marginface.files import read_text, resolve_inside
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
    """What :func:`run_evaluation` computed, with the config and embedding options it ran by.

    ``folds[pair_set]`` = the folds of its accuracy; ``verification[ckpt][pair_set]`` =
    metrics dict; ``scores[ckpt][pair_set]`` = ``(scores, issame)``; ``identification[ckpt]``
    = identification metrics (if asked); ``detect``: the photos were detected and aligned,
    ``detect_cache`` the detection cache's folder.
    """

    checkpoints: list[LoadedCheckpoint]
    pair_set_names: list[str]
    config: EvalConfig
    options: EmbedOptions = field(default_factory=EmbedOptions)
    folds: dict[str, int] = field(default_factory=dict)
    detect: bool = False
    detect_cache: str | None = None
    verification: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    identification: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``ijb[ckpt]`` = IJB-B/C 1:1 metrics; ``ijb_scores[ckpt]`` = (template pair scores, labels)
    ijb: dict[str, dict[str, Any]] = field(default_factory=dict)
    ijb_scores: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
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


def unique_names(names: Sequence[str]) -> list[str]:
    """``names``, a repeated one numbered: ``a, a`` -> ``a, a-2``."""
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
    names = unique_names([checkpoint_name(p) for p in paths])
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
    return unique_names(
        [n if counts[n] == 1 else str(s) for s, n in zip(specs, names, strict=True)]
    )


@dataclass
class _Inputs:
    """Everything a run reads, opened and checked before any model embeds an image: per image
    size, the aligner, the pair sets and the identification set."""

    checkpoints: list[LoadedCheckpoint]
    sizes: list[int]
    aligners: dict[int, Any]
    pair_sets: dict[int, list]
    names: list[str]
    folds: dict[str, int]
    id_sets: dict[int, Any] = field(default_factory=dict)
    split: tuple[list[int], list[int]] | None = None
    ijb_meta: Any = None


def run_evaluation(
    config: EvalConfig, options: EmbedOptions | None = None, *, aligner: Any = None
) -> EvaluationResult:
    """Evaluate ``config``'s checkpoints on its pair sets (and identification, IJB).

    Args:
        config: what to evaluate and how (:class:`~marginface.evaluation.config.EvalConfig`).
        options: how every image is embedded: batch size, flip test, device, DataLoader
            workers, progress bars (:class:`~marginface.evaluation.embed.EmbedOptions`; None =
            its defaults).
        aligner: the images are raw photos: a :class:`marginface.data.detection.detect.FaceAligner`
            that detects and aligns each face (to each checkpoint's image size). It should fall back
            to the whole photo when it finds no face (a pair must still be scored); those photos
            are counted in a warning (with ``options.workers`` 0). An aligner with a
            ``cache`` (:class:`marginface.data.detection.detect_cache.DetectionCache`) detects each
            photo once for all the checkpoints (and, with a cache folder, for later runs).

    Returns: an :class:`EvaluationResult`; :func:`marginface.evaluation.run_report.write_evaluation`
    writes it.
    """
    options = EmbedOptions() if options is None else options
    inputs = _open_inputs(config, aligner)
    result = EvaluationResult(
        checkpoints=inputs.checkpoints,
        pair_set_names=inputs.names,
        config=config,
        options=options,
        folds=inputs.folds,
        detect=aligner is not None,
        detect_cache=_cache_folder(aligner),
    )
    first = inputs.pair_sets[inputs.sizes[0]] if inputs.sizes else []
    for name, pair_set in zip(inputs.names, first, strict=True):
        result.warnings += small_set_warnings([name], [pair_set], inputs.folds[name])
        result.warnings += fold_warnings(
            name, pair_set, inputs.folds[name], config.n_folds, config.fold_seed
        )
    for ckpt in inputs.checkpoints:
        _evaluate_checkpoint(result, ckpt, inputs)
    result.warnings += _image_warnings(inputs, config, aligner)
    return result


def _open_inputs(config: EvalConfig, aligner: Any) -> _Inputs:
    """Load the checkpoints, open the pair sets (for each image size the checkpoints need)
    and the identification set, read IJB's lists."""
    from marginface.data import open_pairs

    loaded = load_checkpoints(config.checkpoints)
    sizes = sorted({c.image_size for c in loaded})
    aligners = {size: _aligner_for(aligner, size) for size in sizes}
    pair_sets = {
        size: [
            open_pairs(spec, image_size=size, max_pairs=config.max_pairs, aligner=aligners[size])
            for spec in config.pairs
        ]
        for size in sizes
    }
    names = pair_set_names(config.pairs, [p.name for p in pair_sets[sizes[0]]])
    folds = {
        name: folds_of(pair_set, config.n_folds)
        for name, pair_set in zip(names, pair_sets[sizes[0]], strict=True)
    }
    inputs = _Inputs(loaded, sizes, aligners, pair_sets, names, folds)
    if config.identification is not None:
        inputs.id_sets, inputs.split = _open_identification(config, sizes, aligners)
    if config.ijb is not None:
        from marginface.evaluation.ijb import read_ijb_meta

        inputs.ijb_meta = read_ijb_meta(config.ijb, config.ijb_target)  # checked before any work
    return inputs


def _open_identification(
    config: EvalConfig, sizes: list[int], aligners: dict[int, Any]
) -> tuple[dict[int, Any], tuple[list[int], list[int]] | None]:
    """The identification set per image size, and the gallery / probe split of the given
    lists (None: the default split)."""
    from marginface.data import open_dataset

    id_sets = {
        size: open_dataset(config.identification, image_size=size, aligner=aligners[size])
        for size in sizes
    }
    if config.gallery_list is None:
        return id_sets, None
    ds = id_sets[sizes[0]]
    if not hasattr(ds, "paths"):
        raise ValueError("gallery/probe lists need a folder dataset (with image paths)")
    root = Path(config.identification)
    index_of = {Path(p).resolve(): i for i, p in enumerate(ds.paths)}
    split = (
        _read_list(config.gallery_list, root, index_of),
        _read_list(config.probe_list, root, index_of),
    )
    return id_sets, split


def _evaluate_checkpoint(result: EvaluationResult, ckpt: LoadedCheckpoint, inputs: _Inputs) -> None:
    """One checkpoint on every pair set, IJB and the identification set, into ``result``."""
    from marginface.evaluation.embed import evaluate_pairs
    from marginface.evaluation.identification import evaluate_identification

    config, options = result.config, result.options
    result.verification[ckpt.name] = {}
    result.scores[ckpt.name] = {}
    for name, pair_set in zip(inputs.names, inputs.pair_sets[ckpt.image_size], strict=True):
        metrics, scores = evaluate_pairs(
            ckpt.model,
            pair_set,
            options,
            n_folds=inputs.folds[name],
            threshold_grid=config.threshold_grid,
            fold_seed=config.fold_seed,
        )
        result.verification[ckpt.name][name] = metrics
        result.scores[ckpt.name][name] = (scores, np.asarray(pair_set.issame, dtype=bool))
    if inputs.ijb_meta is not None:
        from marginface.evaluation.ijb import evaluate_ijb

        metrics, scores, labels = evaluate_ijb(
            ckpt.model, inputs.ijb_meta, image_size=ckpt.image_size, options=options
        )
        result.ijb[ckpt.name] = metrics
        result.ijb_scores[ckpt.name] = (scores, labels)
    if config.identification is not None:
        split = inputs.split
        result.identification[ckpt.name] = evaluate_identification(
            ckpt.model,
            inputs.id_sets[ckpt.image_size],
            gallery_indices=split[0] if split else None,
            probe_indices=split[1] if split else None,
            options=options,
        )


def _image_warnings(inputs: _Inputs, config: EvalConfig, aligner: Any) -> list[str]:
    """Unreadable images replaced, a detection cache that could not be written, photos in
    which the detector found no face."""
    out = []
    for size in inputs.sizes:
        for name, pair_set in zip(inputs.names, inputs.pair_sets[size], strict=True):
            bad = getattr(pair_set.images, "num_bad", 0)
            if bad:
                out.append(
                    f"pair set {name}: {bad} unreadable images were replaced by readable ones"
                )
        if config.identification is not None and getattr(inputs.id_sets[size], "num_bad", 0):
            out.append(
                f"identification set: {inputs.id_sets[size].num_bad} unreadable images replaced"
            )
    cache = getattr(aligner, "cache", None)
    if cache is not None and cache.write_error is not None:
        out.append(
            f"the detection cache {cache.root} could not be written ({cache.write_error}): the "
            "faces found were kept for this run only"
        )
    misses = sum(a.misses for a in inputs.aligners.values() if a is not None)
    if misses:
        out.append(f"the detector found no face in {misses} photos; they were used whole (resized)")
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
