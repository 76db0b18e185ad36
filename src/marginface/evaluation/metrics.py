"""Verification metrics the way face-recognition papers report them.

* LFW-style accuracy: the pairs are cut into ``n_folds`` folds **in order** (LFW: 10 folds of
  600 pairs); for each fold, the threshold that maximises accuracy on the other folds is
  chosen and the accuracy is measured on the held-out fold; mean and (population) standard
  deviation over the folds.
* ROC (scikit-learn's ``roc_curve``) over all pairs: AUC, equal error rate, and the true-accept
  rate at false-accept rates 1e-6 .. 1e-1, for those FARs that the number of impostor pairs can
  resolve (``far >= 1 / num_impostors``).

Decision rule everywhere: a pair is predicted "same" when ``score >= threshold``.

Threshold choice (and ties), :func:`best_threshold`: with the distinct training scores
``u_1 < ... < u_m``, the candidates are ``u_1 - 1`` (accept all), the midpoints
``(u_i + u_{i+1}) / 2`` and ``u_m + 1`` (reject all).  Pairs with equal scores always fall on
the same side.  When several candidates reach the same best accuracy, the middle one of them
(in increasing order; the lower of the two middle ones for an even count) is taken, so the
choice is deterministic and does not lean towards the extreme candidates.

InsightFace's grid (``threshold_grid="insightface"``), to compare with papers: InsightFace's
``verification.py`` (``calculate_roc``) works on squared Euclidean distances of the normalised
embeddings, ``d = |a - b|^2 = 2 - 2 cos``, predicts "same" when ``d < t``, and tries only
``t`` in ``arange(0, 4, 0.01)`` (the first best one, as ``np.argmax`` picks), with the same
ordered folds. The grid misses the best threshold between grid points, so it reads a little
lower than the exact rule on the same scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from marginface.checks import check_int

#: FARs at which TAR is reported (when resolvable by the number of impostor pairs)
FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _check_inputs(scores: ArrayLike, issame: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y_raw = np.asarray(issame)
    if s.ndim != 1 or y_raw.ndim != 1:
        raise ValueError(f"scores and issame must be 1-D, got shapes {s.shape} and {y_raw.shape}")
    if len(s) != len(y_raw):
        raise ValueError(f"scores has {len(s)} entries but issame has {len(y_raw)}")
    if not np.all(np.isfinite(s)):
        bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"{bad} of {len(s)} scores are not finite (NaN or inf)")
    if y_raw.dtype != bool and not np.all(np.isin(y_raw, (0, 1))):
        raise ValueError("issame must hold booleans (or 0/1)")
    return s, y_raw.astype(bool)


def best_threshold(scores: ArrayLike, issame: ArrayLike) -> tuple[float, float]:
    """The threshold maximising accuracy of ``score >= threshold`` on these pairs.

    Returns ``(threshold, accuracy)``; see the module docstring for the candidates and ties.
    Exact: O(n log n), every distinct score considered.
    """
    s, y = _check_inputs(scores, issame)
    if len(s) == 0:
        raise ValueError("cannot choose a threshold on zero pairs")
    values, inverse = np.unique(s, return_inverse=True)
    genuine = np.bincount(inverse, weights=y, minlength=len(values))
    impostor = np.bincount(inverse, weights=~y, minlength=len(values))
    # candidate i (0..m) accepts the scores above values[i-1]: correct = genuine above + impostor
    # at or below
    impostor_le = np.concatenate([[0.0], np.cumsum(impostor)])
    genuine_gt = genuine.sum() - np.concatenate([[0.0], np.cumsum(genuine)])
    correct = genuine_gt + impostor_le
    candidates = np.concatenate(
        [[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1.0]]
    )
    tied = np.flatnonzero(correct == correct.max())
    chosen = tied[(len(tied) - 1) // 2]
    return float(candidates[chosen]), float(correct[chosen] / len(s))


def accuracy_at(scores: ArrayLike, issame: ArrayLike, threshold: float) -> float:
    """Fraction of pairs classified correctly by ``score >= threshold``."""
    s, y = _check_inputs(scores, issame)
    return float(np.mean((s >= threshold) == y))


def fold_indices(n: int, n_folds: int) -> list[np.ndarray]:
    """Consecutive folds of ``range(n)`` in order (first ``n % n_folds`` folds one larger),
    like scikit-learn's ``KFold(n_folds, shuffle=False)``."""
    return np.array_split(np.arange(n), n_folds)


def kfold_accuracy(
    scores: ArrayLike, issame: ArrayLike, n_folds: int = 10
) -> tuple[float, float, list[float], list[float]]:
    """LFW-style accuracy: ``(mean, std, fold accuracies, fold thresholds)``."""
    s, y = _check_inputs(scores, issame)
    check_int(n_folds, "n_folds", 2)
    if len(s) < n_folds:
        raise ValueError(f"{len(s)} pairs cannot be split into n_folds={n_folds} folds")
    accs: list[float] = []
    thresholds: list[float] = []
    for test in fold_indices(len(s), n_folds):
        train = np.ones(len(s), dtype=bool)
        train[test] = False
        threshold, _ = best_threshold(s[train], y[train])
        thresholds.append(threshold)
        accs.append(float(np.mean((s[test] >= threshold) == y[test])))
    return float(np.mean(accs)), float(np.std(accs)), accs, thresholds


#: InsightFace's thresholds on the squared distance 2 - 2 cos: 0, 0.01, ..., 3.99.
INSIGHTFACE_GRID = np.arange(0, 4, 0.01)
#: The ways to choose the fold thresholds: every distinct score, or InsightFace's grid.
THRESHOLD_GRIDS = ("exact", "insightface")


def insightface_kfold_accuracy(
    scores: ArrayLike, issame: ArrayLike, n_folds: int = 10
) -> tuple[float, float, list[float], list[float]]:
    """LFW-style accuracy with InsightFace's threshold grid (see the module docstring).

    Returns ``(mean, std, fold accuracies, fold thresholds)``; a fold threshold is given as the
    cosine ``1 - t / 2`` of its grid distance ``t`` (the rule there is ``cos > 1 - t / 2``).
    Counts by sorted search: O(n log n) per fold, exact integers, as InsightFace's own loop.
    """
    s, y = _check_inputs(scores, issame)
    check_int(n_folds, "n_folds", 2)
    if len(s) < n_folds:
        raise ValueError(f"{len(s)} pairs cannot be split into n_folds={n_folds} folds")
    distance = 2.0 - 2.0 * s

    def correct(d: np.ndarray, same: np.ndarray) -> np.ndarray:
        # per grid threshold t: genuine pairs with d < t plus impostor pairs with d >= t
        genuine, impostor = np.sort(d[same]), np.sort(d[~same])
        accepted_genuine = np.searchsorted(genuine, INSIGHTFACE_GRID, side="left")
        accepted_impostor = np.searchsorted(impostor, INSIGHTFACE_GRID, side="left")
        return accepted_genuine + (len(impostor) - accepted_impostor)

    accs: list[float] = []
    thresholds: list[float] = []
    for test in fold_indices(len(s), n_folds):
        train = np.ones(len(s), dtype=bool)
        train[test] = False
        best = int(np.argmax(correct(distance[train], y[train]) / int(train.sum())))
        accs.append(float(correct(distance[test], y[test])[best]) / len(test))
        thresholds.append(float(1.0 - INSIGHTFACE_GRID[best] / 2.0))
    return float(np.mean(accs)), float(np.std(accs)), accs, thresholds


def roc(scores: ArrayLike, issame: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` from scikit-learn's ``roc_curve`` (all points kept)."""
    from sklearn.metrics import roc_curve

    s, y = _check_inputs(scores, issame)
    _need_both(y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thr


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """EER: where FAR equals FRR = 1 - TAR, linearly interpolated along the ROC."""
    d = fpr - (1.0 - tpr)  # increasing from -1 (or so) up to >= 0
    i = int(np.argmax(d >= 0))
    if i == 0:
        return float(fpr[0])
    frac = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + frac * (fpr[i] - fpr[i - 1]))


def tar_at_far(
    fpr: np.ndarray, tpr: np.ndarray, num_impostors: int, fars: tuple[float, ...] = FARS
) -> dict[float, float]:
    """TAR at each resolvable FAR: the best TPR over ROC points with ``fpr <= far``.

    A FAR is resolvable when ``far * num_impostors >= 1`` (at least one false accept allowed).
    """
    out: dict[float, float] = {}
    for far in fars:
        if far * num_impostors < 1.0 - 1e-9:
            continue
        ok = fpr <= far * (1.0 + 1e-9)
        out[far] = float(tpr[ok].max())
    return out


def _need_both(y: np.ndarray) -> None:
    n_gen = int(y.sum())
    n_imp = int(len(y) - n_gen)
    if n_gen == 0 or n_imp == 0:
        raise ValueError(
            f"verification needs both genuine and impostor pairs; got {n_gen} genuine and "
            f"{n_imp} impostor pairs"
        )


def verification_metrics(
    scores: ArrayLike, issame: ArrayLike, n_folds: int = 10, threshold_grid: str = "exact"
) -> dict[str, Any]:
    """All verification metrics of pair scores (higher = more alike, e.g. cosine).

    Args:
        scores: (N,) pair scores.
        issame: (N,) booleans, True for genuine pairs.
        n_folds: folds of the LFW-style accuracy (in order).
        threshold_grid: how the accuracy's fold thresholds are chosen: ``exact`` (every
            distinct score) or ``insightface`` (InsightFace's grid; scores must be cosines).

    Returns a JSON-friendly dict: ``accuracy``, ``accuracy_std``, ``best_threshold`` (chosen on
    all pairs), ``auc``, ``eer``, ``tar_at_far`` ({far: tar}, resolvable FARs only),
    ``fold_accuracies``, ``fold_thresholds``, ``threshold_grid``, ``num_pairs``,
    ``num_genuine``, ``num_impostor``.
    """
    s, y = _check_inputs(scores, issame)
    _need_both(y)
    if threshold_grid not in THRESHOLD_GRIDS:
        raise ValueError(f"threshold_grid must be one of {THRESHOLD_GRIDS}, got {threshold_grid!r}")
    if threshold_grid == "insightface":
        mean, std, accs, thresholds = insightface_kfold_accuracy(s, y, n_folds)
    else:
        mean, std, accs, thresholds = kfold_accuracy(s, y, n_folds)
    threshold, _ = best_threshold(s, y)
    fpr, tpr, _ = roc(s, y)
    num_impostor = int((~y).sum())
    return {
        "accuracy": mean,
        "accuracy_std": std,
        "best_threshold": threshold,
        "auc": float(np.trapezoid(tpr, fpr)),
        "eer": equal_error_rate(fpr, tpr),
        "tar_at_far": tar_at_far(fpr, tpr, num_impostor),
        "fold_accuracies": accs,
        "fold_thresholds": thresholds,
        "threshold_grid": threshold_grid,
        "num_pairs": int(len(s)),
        "num_genuine": int(y.sum()),
        "num_impostor": num_impostor,
    }


def far_key(far: float) -> str:
    """JSON / table key of a FAR: ``1e-04``."""
    return f"{far:.0e}"


def jsonable_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with the ``tar_at_far`` keys as strings (``"1e-04"``), ready for json."""
    out = dict(metrics)
    if "tar_at_far" in out:
        out["tar_at_far"] = {far_key(float(k)): v for k, v in out["tar_at_far"].items()}
    return out
