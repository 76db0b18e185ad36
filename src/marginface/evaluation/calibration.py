"""A threshold that belongs to the model: the cosine threshold at a chosen false-accept rate
(FAR) on a named pair set, with the true-accept rate (TAR) there and its bootstrap interval.

``marginface calibrate`` and the end of ``marginface train`` write the record of
:func:`calibrate_scores` into ``model.json`` under ``"calibration"`` (and the threshold under
the older top-level ``"threshold"`` too); ``verify`` and ``search`` decide with it
(:func:`decision_threshold`).

The threshold at FAR f on impostor pairs of count M: at most ``k = floor(f * M)`` impostors may
be accepted (``score >= threshold``), so the threshold lies just above the (k + 1)-th highest
impostor score v: halfway between v and the next higher score of the set (or just above v when
none is higher). It is the threshold of :func:`marginface.evaluation.metrics.tar_at_far` (the
best TAR whose FAR does not exceed f), so the TAR recorded equals the one ``marginface eval``
reports at that FAR on the same scores. A FAR needs ``f * M >= 1`` (one false accept allowed):
1e-3 needs 1,000 impostor pairs.

The interval is a 95% percentile bootstrap of TAR at that FAR (the threshold chosen anew in each
replicate), over identities where the pair set knows them (LFW ``pairs.txt``, pairs generated
from a dataset: every pair counts as often as its first face's identity is drawn), else over
pairs (a ``.bin``); the record says which (``bootstrap.over``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> issame = np.repeat([True, False], 2000)
>>> scores = np.where(issame, 0.6, 0.1) + rng.normal(0, 0.1, 4000)
>>> cal = calibrate_scores(scores, issame, far=1e-3, pairs="toy", replicates=200)
>>> cal["false_accepts"], cal["impostor"], cal["bootstrap"]["over"]
(2, 2000, 'pairs')
>>> round(cal["threshold"], 2), cal["tar_interval"][0] <= cal["tar"] <= cal["tar_interval"][1]
(0.39, True)
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from marginface.evaluation.metrics import FARS, _check_inputs, _need_both, far_key

#: the FAR ``calibrate`` and ``train`` aim for by default
DEFAULT_FAR = 1e-3


def check_far(far: float, flag: str = "--far") -> float:
    """``far`` as a float in (0, 1), or a ValueError naming ``flag``."""
    if isinstance(far, bool) or not isinstance(far, int | float) or not 0.0 < far < 1.0:
        raise ValueError(f"{flag} must be a false-accept rate in (0, 1), e.g. 1e-3; got {far!r}")
    return float(far)


def resolvable(far: float, impostors: int) -> bool:
    """Whether ``impostors`` impostor pairs resolve ``far`` (one false accept allowed)."""
    return far * impostors >= 1.0 - 1e-9


def fitting_far(impostors: int, far: float = DEFAULT_FAR) -> float | None:
    """``far`` if ``impostors`` resolve it, else the smallest larger FAR of
    :data:`~marginface.evaluation.metrics.FARS` that they resolve (None if none: fewer than
    10 impostors)."""
    if resolvable(far, impostors):
        return far
    return next((f for f in sorted(FARS) if f > far and resolvable(f, impostors)), None)


def threshold_at_far(scores: ArrayLike, issame: ArrayLike, far: float) -> dict[str, float]:
    """``threshold``, ``tar`` and ``false_accepts`` at ``far`` (see the module docstring);
    ValueError when the impostor pairs cannot resolve ``far``."""
    s, y = _check_inputs(scores, issame)
    _need_both(y)
    far = check_far(far, "far")
    impostor = np.sort(s[~y])[::-1]
    if not resolvable(far, len(impostor)):
        raise ValueError(
            f"FAR {far:g} needs at least {math.ceil(1 / far - 1e-9)} impostor pairs; the set "
            f"has {len(impostor)}"
        )
    allowed = int(math.floor(far * len(impostor) * (1 + 1e-9)))
    v = impostor[allowed]  # the highest impostor score that must be rejected
    higher = s[s > v]
    threshold = float((v + higher.min()) / 2.0) if higher.size else float(np.nextafter(v, np.inf))
    return {
        "threshold": threshold,
        "tar": float(np.mean(s[y] >= threshold)),
        "false_accepts": int(np.sum(impostor >= threshold)),
    }


def tar_interval(
    scores: ArrayLike,
    issame: ArrayLike,
    far: float,
    groups: ArrayLike | None = None,
    replicates: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of TAR at ``far`` under the bootstrap over ``groups`` (each pair's
    identity), or over pairs when ``groups`` is None."""
    from marginface.evaluation.bootstrap import grouped_tar_at_far, identity_counts

    s, y = _check_inputs(scores, issame)
    groups = np.arange(len(s)) if groups is None else np.asarray(groups)
    counts, index = identity_counts(groups, replicates, seed)
    step = max(1, 4_000_000 // max(1, len(s)))  # replicates per block: bounded temporaries
    tars = np.concatenate(
        [
            grouped_tar_at_far(s, y, counts[i : i + step], index, far)
            for i in range(0, replicates, step)
        ]
    )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(tars, [tail, 1.0 - tail])
    return float(low), float(high)


def calibrate_scores(
    scores: ArrayLike,
    issame: ArrayLike,
    far: float = DEFAULT_FAR,
    *,
    pairs: str,
    groups: ArrayLike | None = None,
    replicates: int = 1000,
    seed: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """The calibration record of pair ``scores`` at ``far`` on the pair set named ``pairs``.

    Keys: ``threshold``, ``far``, ``pairs``, ``genuine``, ``impostor`` (pair counts),
    ``false_accepts``, ``tar``, ``tar_interval`` ([low, high], 95%), ``bootstrap`` (``over``:
    ``identities`` or ``pairs``, ``count``, ``replicates``), ``date`` (UTC, ISO 8601), and the
    ``extra`` keys given (e.g. ``flip``).
    """
    s, y = _check_inputs(scores, issame)
    found = threshold_at_far(s, y, far)
    low, high = tar_interval(s, y, far, groups, replicates, seed)
    count = len(np.unique(groups)) if groups is not None else len(s)
    return {
        "threshold": found["threshold"],
        "far": float(far),
        "pairs": str(pairs),
        "genuine": int(y.sum()),
        "impostor": int((~y).sum()),
        "false_accepts": found["false_accepts"],
        "tar": found["tar"],
        "tar_interval": [low, high],
        "bootstrap": {
            "over": "identities" if groups is not None else "pairs",
            "count": int(count),
            "replicates": int(replicates),
            "level": 0.95,
        },
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


def calibrate_pair_set(
    model: Any,
    pair_set: Any,
    far: float = DEFAULT_FAR,
    options: Any = None,
    *,
    pairs: str | None = None,
    replicates: int = 1000,
) -> dict[str, Any]:
    """Embed ``pair_set`` (a :class:`marginface.data.PairSet`) with ``model`` as every
    command does (:class:`~marginface.evaluation.embed.EmbedOptions`: flip test, batch size,
    device; None: the defaults without a progress bar) and calibrate its scores
    (:func:`calibrate_scores`); ``pairs`` names the set in the record (default: its name)."""
    from marginface.evaluation.embed import EmbedOptions, embed_dataset, pair_scores

    options = EmbedOptions(progress=False) if options is None else options
    scores = pair_scores(embed_dataset(model, pair_set.images, options, desc="calibrating"))
    return calibrate_scores(
        scores,
        pair_set.issame,
        far,
        pairs=pair_set.name if pairs is None else pairs,
        groups=getattr(pair_set, "groups", None),
        replicates=replicates,
        flip=bool(options.flip),
    )


def write_calibration(model_json: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Put ``record`` into ``model_json`` under ``"calibration"`` (and its threshold under
    ``"threshold"``), checked and written atomically (a temporary file, then a rename)."""
    from marginface.backbones.checkpoint import complete_info
    from marginface.files import atomic_write_text, read_text

    path = Path(model_json)
    try:
        info = json.loads(read_text(path, "model info"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    info = complete_info({**info, "calibration": dict(record)}, str(path))
    info["threshold"] = record["threshold"]
    return atomic_write_text(path, json.dumps(info, indent=2) + "\n")


def describe(record: Mapping[str, Any]) -> str:
    """One line: threshold, FAR, pair set, TAR with its interval."""
    low, high = record["tar_interval"]
    over = record.get("bootstrap", {}).get("over", "pairs")
    return (
        f"threshold {record['threshold']:.4f} at FAR {far_key(record['far'])} on "
        f"{record['pairs']} ({record['genuine']} genuine / {record['impostor']} impostor "
        f"pairs): TAR {100 * record['tar']:.2f}% [{100 * low:.2f}, {100 * high:.2f}] "
        f"(95% bootstrap over {over})"
    )


def decision_threshold(
    info: Mapping[str, Any], given: float | None = None
) -> tuple[float | None, str]:
    """The threshold ``verify`` / ``search`` decide with, and where it came from: ``given``
    (``--threshold``), else the model's calibration, else its top-level ``threshold`` (set by
    hand or by an older ``train``: FAR unknown), else None."""
    if given is not None:
        return float(given), "--threshold"
    cal = info.get("calibration")
    if cal:
        return float(cal["threshold"]), (
            f"calibrated at FAR {far_key(cal['far'])} on {cal.get('pairs', '?')}"
        )
    threshold = info.get("threshold")
    if threshold is not None:
        return float(threshold), "model.json's threshold, not calibrated: FAR unknown"
    return None, "none"
