"""The folds of the accuracy: how many a pair set is cut into, how the report says so, and the
warnings about folds (a header that disagrees, a fold of one class) and sets too small."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def folds_of(pair_set: Any, n_folds: int | None) -> int:
    """The folds of a pair set's accuracy: ``n_folds`` when given, else its file's header's
    folds when it has two or more, else 10."""
    if n_folds is not None:
        return n_folds
    header = getattr(pair_set, "header", None)
    return header[0] if header is not None and header[0] >= 2 else 10


def one_value(folds: dict[str, int]) -> int | None:
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


def folds_text(folds: dict[str, int], n_folds: int | None, fold_seed: int | None) -> str:
    """How the accuracy's folds were cut, for the report: ``10 folds in order``."""
    k: Any = n_folds if n_folds is not None else one_value(folds)
    if k is None:
        k = "per pair set: " + ", ".join(f"{n} {v}" for n, v in folds.items()) + ","
    return f"{k} folds " + (
        "in order" if fold_seed is None else f"of the pairs shuffled by seed {fold_seed}"
    )
