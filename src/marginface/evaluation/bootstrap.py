"""Paired bootstrap over identities: is model A ahead of model B, or within noise?

Pairs of faces are not independent: every pair of one identity shares that identity's photos.
The bootstrap therefore resamples *identities* (clusters), not pairs: each replicate draws the
identities with replacement, and every pair counts as often as the identity it belongs to (its
first face's) was drawn. Both models are scored on the same replicate (paired), so the interval
of the difference A - B excludes what the two share. A percentile 95% interval whose lower end is
above 0 says "ahead", whose upper end is below 0 says "behind", otherwise "within noise".

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> issame = np.repeat([True, False], 500); groups = np.tile(np.arange(50), 20)
>>> a = np.where(issame, 1.0, 0.0) + rng.normal(0, 0.3, 1000)   # a better model
>>> b = np.where(issame, 1.0, 0.0) + rng.normal(0, 0.6, 1000)
>>> r = paired_bootstrap(a, b, issame, groups, far=1e-2, replicates=200)
>>> r["verdict"], r["ci_low"] > 0
('ahead', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def weighted_tar_at_far(
    scores: np.ndarray, issame: np.ndarray, weights: np.ndarray, far: float | Sequence[float]
) -> np.ndarray:
    """TAR at FAR of one score vector under R weightings of the pairs: (R,), or (F, R) for a
    sequence of F FARs (the impostors' cumulative weights are computed once for all).

    ``weights`` (R, N): each pair's count in each replicate. As
    :func:`marginface.evaluation.metrics.tar_at_far` (the best TPR over thresholds whose FAR is
    at most ``far``): with unit weights the two agree. The threshold lies just above the
    highest impostor score v whose (weighted) share of impostors scoring >= v exceeds ``far``.
    """
    w = np.atleast_2d(np.asarray(weights, np.float64))
    return grouped_tar_at_far(scores, issame, w, np.arange(w.shape[1]), far)


def grouped_tar_at_far(
    scores: np.ndarray,
    issame: np.ndarray,
    counts: np.ndarray,
    index: np.ndarray,
    far: float | Sequence[float],
) -> np.ndarray:
    """:func:`weighted_tar_at_far` with the weights of pair n in replicate r given as
    ``counts[r, index[n]]`` (the identity bootstrap's form: ``counts`` (R, G) per group).

    Exact and cheap for many pairs: a threshold at FAR f lies among the top impostors, so only
    the highest ~f share of them is read per replicate (more if a replicate needs it), and the
    impostors' total weight comes from the per-group counts.
    """
    scores, issame = np.asarray(scores, np.float64), np.asarray(issame, bool)
    counts, index = np.atleast_2d(np.asarray(counts, np.float64)), np.asarray(index)
    fars = np.atleast_1d(np.asarray(far, np.float64))
    imp, gen = np.flatnonzero(~issame), np.flatnonzero(issame)
    order = imp[np.argsort(-scores[imp], kind="stable")]
    groups = counts.shape[1]
    imp_total = counts @ np.bincount(index[imp], minlength=groups).astype(np.float64)
    imp_total = np.maximum(imp_total, 1e-300)[:, None]
    w_gen = counts[:, index[gen]]
    gen_total = np.maximum(w_gen.sum(axis=1), 1e-300)
    top = min(len(order), max(1024, int(4 * fars.max() * len(order)) + 1))
    while True:  # integer-valued weights: the prefix sums equal those over all impostors
        share = np.cumsum(counts[:, index[order[:top]]], axis=1) / imp_total
        overs = [share > f * (1.0 + 1e-9) for f in fars]
        if top == len(order) or all(o.any(axis=1).all() for o in overs):
            break
        top = min(len(order), 2 * top)
    out = []
    for over in overs:
        first = np.argmax(over, axis=1)
        v = np.where(over.any(axis=1), scores[order][first], -np.inf)
        accepted = (scores[gen][None, :] > v[:, None]) * w_gen
        out.append(accepted.sum(axis=1) / gen_total)
    return out[0] if np.ndim(far) == 0 else np.stack(out)


def identity_counts(
    groups: ArrayLike, replicates: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Identities drawn with replacement: ``counts`` (R, G), how often each of the G groups was
    drawn in each replicate, and ``index`` (N,), each pair's group; a pair's weight in
    replicate r is ``counts[r, index]``."""
    groups = np.asarray(groups)
    ids, index = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(replicates, len(ids)))
    counts = np.zeros((replicates, len(ids)), dtype=np.float32)
    np.add.at(counts, (np.arange(replicates)[:, None], draws), 1.0)
    return counts, index


def verdict_of(low: float, high: float) -> str:
    """ "ahead" (interval above 0), "behind" (below 0) or "within noise"."""
    if low > 0:
        return "ahead"
    if high < 0:
        return "behind"
    return "within noise"


def paired_bootstrap(
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    issame: ArrayLike,
    groups: ArrayLike,
    far: float | Sequence[float],
    replicates: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """TAR@FAR of A minus B, with the percentile interval of the paired identity bootstrap.

    Args:
        scores_a, scores_b: (N,) pair scores of the two models on the same pairs, or (S, N):
            one row per seed (model k of A paired with model k of B); the statistic is then
            the mean over the S seeds of each model's TAR.
        issame: (N,) True for genuine pairs.
        groups: (N,) the identity each pair belongs to (e.g. its first face's).
        far: the false-accept rate, or a sequence of them (one pass over the replicates).
        replicates, seed, level: bootstrap replicates, their seed, the interval's coverage.

    Returns ``difference`` (on all pairs), ``ci_low``, ``ci_high``, ``verdict``, ``a``, ``b``,
    ``replicates``, ``level``; for a sequence of FARs, a dict of those per FAR.
    """
    a = np.atleast_2d(np.asarray(scores_a, np.float64))
    b = np.atleast_2d(np.asarray(scores_b, np.float64))
    y = np.asarray(issame, bool)
    n = y.shape[0] if y.ndim == 1 else -1
    if not (a.shape == b.shape and a.ndim == 2 and a.shape[1] == n == np.shape(groups)[0]):
        raise ValueError(
            f"scores_a and scores_b must be (N,) or (S, N), issame and groups (N,), of one "
            f"length N, got {np.shape(scores_a)}, {np.shape(scores_b)}, {y.shape}, "
            f"{np.shape(groups)}"
        )
    if y.all() or not y.any():
        raise ValueError("the pairs need both genuine and impostor pairs")
    fars = [float(f) for f in np.atleast_1d(np.asarray(far, np.float64))]
    for f in fars:
        if f * int((~y).sum()) < 1:
            raise ValueError(
                f"FAR {f:g} is not resolvable with {int((~y).sum())} impostor pairs "
                f"(it needs at least {int(np.ceil(1 / f))})"
            )

    counts, index = identity_counts(groups, replicates, seed)

    def mean_tar(scores: np.ndarray, c: np.ndarray) -> np.ndarray:  # (F, R)
        return np.mean([grouped_tar_at_far(row, y, c, index, fars) for row in scores], axis=0)

    ones = np.ones((1, counts.shape[1]))
    ta, tb = mean_tar(a, ones)[:, 0], mean_tar(b, ones)[:, 0]
    # replicates per block: a few (block, genuine pairs + top impostors) temporaries
    step = max(1, 4_000_000 // max(1, int(y.sum()) + int(4 * max(fars) * (~y).sum()) + 1024))
    diffs = []
    for i in range(0, replicates, step):
        c = counts[i : i + step]
        diffs.append(mean_tar(a, c) - mean_tar(b, c))
    diffs = np.concatenate(diffs, axis=1)  # (F, R)
    tail = (1.0 - level) / 2.0
    out = {}
    for k, f in enumerate(fars):
        low, high = (float(q) for q in np.quantile(diffs[k], [tail, 1.0 - tail]))
        out[f] = {
            "difference": float(ta[k] - tb[k]),
            "ci_low": low,
            "ci_high": high,
            "verdict": verdict_of(low, high),
            "a": float(ta[k]),
            "b": float(tb[k]),
            "replicates": int(replicates),
            "level": float(level),
        }
    return out[fars[0]] if np.ndim(far) == 0 else out
