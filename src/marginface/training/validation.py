"""Verification during training on pair sets (``--pairs SPEC``, several allowed).

Pair sets come from ``marginface.data.open_pairs`` and are scored with
``marginface.evaluation.evaluate_pairs`` (flip test, LFW-style folds). Validation runs with the
random number generators forked, so it never changes the training's random stream (an
interrupted-and-resumed run stays identical to an uninterrupted one).

Sized by time (``val_max_pairs`` None, the default): the pairs generated from a dataset spec
are cut, before training, to the first ones (genuine and impostor alternate, so a prefix stays
balanced) whose distinct images fit :func:`image_budget`: validation under :data:`VAL_SHARE` of
an epoch's time. The rule counts images, not seconds, so it is the same on every machine and
on a resumed run: an image embedded for validation costs :data:`EMBED_COST` training images
(two forward passes, the image and its mirror, against a forward and a backward pass).
Files (``.bin``, ``pairs.txt``) are used whole, as their protocols define.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

#: validation's share of an epoch's time, at most (when sized by time)
VAL_SHARE = 0.15
#: the time of an image embedded for validation over that of a training image (measured in
#: docs/training.md: flip test = two forward passes, no backward)
EMBED_COST = 2 / 3
#: pairs kept at least, whatever the budget (fewer say little: a 100-pair accuracy is +-5%)
MIN_PAIRS = 200


def image_budget(epoch_images: int, validations_per_epoch: float) -> int:
    """Distinct images one validation may embed: ``VAL_SHARE`` of an epoch's training images'
    time, shared over its validations, at ``EMBED_COST`` each."""
    per_epoch = VAL_SHARE * epoch_images / EMBED_COST
    return max(1, int(per_epoch / max(validations_per_epoch, 1e-9)))


def distinct_count(images: Any) -> int:
    """Distinct images of a pair set's images: the dataset items named (generated pairs),
    else every position."""
    indices = getattr(images, "indices", None)
    return len(np.unique(indices)) if indices is not None else len(images)


class Validator:
    """Opens the pair sets once and evaluates a backbone on all of them.

    Args:
        specs: pair-set specs for ``open_pairs`` (a .bin, a pairs.txt, a dataset spec).
        image_size: side of the images the backbone takes.
        max_pairs, batch_size, device: passed on to ``open_pairs`` / ``evaluate_pairs``
            (max_pairs None: 3000, then :meth:`fit` to the time budget).
        max_bad: unreadable images allowed per set (None: no limit).
    """

    def __init__(
        self,
        specs: list[str],
        image_size: int,
        max_pairs: int | None = 3000,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
        max_bad: int | None = None,
    ) -> None:
        from marginface.data import open_pairs

        self.sets = []
        self.specs = list(specs)
        names: set[str] = set()
        for spec in specs:
            pairs = open_pairs(spec, image_size=image_size, max_pairs=max_pairs or 3000)
            inner = getattr(pairs.images, "dataset", None)
            if inner is not None and hasattr(inner, "max_bad"):
                inner.max_bad = max_bad
            name = str(getattr(pairs, "name", spec)) or spec
            while name in names:  # two sets with one name (e.g. two synthetic specs)
                name += "'"
            names.add(name)
            self.sets.append((name, pairs))
        self.batch_size, self.device = batch_size, device
        #: {name: (pair scores, pair set)} of the last :meth:`run` (for the calibration)
        self.last_scores: dict[str, tuple[np.ndarray, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self.sets)

    def images_per_run(self) -> int:
        """Distinct images one validation embeds (every set)."""
        return sum(distinct_count(pairs.images) for _, pairs in self.sets)

    def fit(self, budget: int) -> list[dict[str, Any]]:
        """Cut the generated pair sets to their first pairs whose distinct images fit
        ``budget`` (shared over the generated sets; at least :data:`MIN_PAIRS` pairs each).
        Returns, per set, ``{name, pairs, images, cut}`` (what one validation does)."""
        from marginface.data.base import ImagesOnly
        from marginface.data.formats.verification import PairSet

        generated = [p for _, p in self.sets if isinstance(p.images, ImagesOnly)]
        share = budget // max(1, len(generated))
        report = []
        for k, (name, pairs) in enumerate(self.sets):
            cut = False
            if isinstance(pairs.images, ImagesOnly):
                keep = _pairs_within(pairs.images.indices, share)
                keep = min(len(pairs), max(keep, MIN_PAIRS))
                if keep < len(pairs):
                    images = ImagesOnly(pairs.images.dataset, pairs.images.indices[: 2 * keep])
                    groups = None if pairs.groups is None else pairs.groups[:keep]
                    pairs = PairSet(
                        images, pairs.issame[:keep], pairs.name, groups, header=pairs.header
                    )
                    self.sets[k] = (name, pairs)
                    cut = True
            report.append(
                {"name": name, "pairs": len(pairs), "images": distinct_count(pairs.images),
                 "cut": cut}
            )  # fmt: skip
        return report

    def decode_all(self) -> Validator:
        """Decode every image of every set once, now: a set that cannot be read fails before
        training starts rather than at its first validation. Returns self."""
        for spec, (_, pairs) in zip(self.specs, self.sets, strict=True):
            try:
                for i in range(len(pairs.images)):
                    pairs.images[i]
            except ValueError as exc:  # no readable image, or more unreadable than allowed
                raise ValueError(f"validation set {spec}: {exc}") from None
        return self

    def run(self, backbone: nn.Module) -> dict[str, dict[str, Any]]:
        """Metrics per pair set ({name: verification metrics}); ``backbone`` left as it was."""
        from marginface.evaluation import EmbedOptions, evaluate_pairs

        options = EmbedOptions(batch_size=self.batch_size, device=self.device, progress=False)

        was_training = backbone.training
        py_state, np_state = random.getstate(), np.random.get_state()
        devices = [self.device] if torch.device(self.device).type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                backbone.eval()
                results = {}
                for name, pairs in self.sets:
                    metrics, scores = evaluate_pairs(backbone, pairs, options)
                    results[name] = metrics
                    self.last_scores[name] = (scores, pairs)
                return results
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            backbone.train(was_training)


def _pairs_within(indices: np.ndarray, budget: int) -> int:
    """How many of the first pairs (``indices``: 2 per pair) name at most ``budget`` distinct
    images."""
    seen: set[int] = set()
    for k in range(len(indices) // 2):
        seen.update((int(indices[2 * k]), int(indices[2 * k + 1])))
        if len(seen) > budget:
            return k
    return len(indices) // 2


def score_of(results: dict[str, dict[str, Any]]) -> float:
    """The number the best checkpoint is chosen by: mean accuracy over the pair sets."""
    return float(np.mean([m["accuracy"] for m in results.values()]))


@dataclass
class Validated:
    """What a run's validations have found so far, kept across a resume.

    ``best``: the best validation (``step``, ``epoch``, ``score``: :func:`score_of`,
    ``threshold``) or None; ``threshold``: the first set's best threshold at the last
    validation (``model.json``'s); ``last``: the last validation's metrics per set; ``step``:
    the step last validated (-1: none; a step is validated once); ``calibration``: the
    calibration of the weights of ``step`` (:mod:`marginface.training.record`'s cache, as
    ``(step, record)``)."""

    best: dict[str, Any] | None = None
    threshold: float | None = None
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    step: int = -1
    calibration: tuple[int, Any] | None = None

    def record(self, results: dict[str, dict[str, Any]], step: int, epoch: int) -> bool:
        """Keep the validation of ``step``; True when it is the best so far."""
        self.last = results
        self.threshold = float(next(iter(results.values()))["best_threshold"])
        score = score_of(results)
        if self.best is None or score > self.best["score"]:
            self.best = {"step": step, "epoch": epoch, "score": score, "threshold": self.threshold}
            return True
        return False


def fit_to_epoch(
    validator: Validator,
    cfg: Any,
    steps_per_epoch: int,
    logger: Any,
    step: int,
    say: Callable[[str], None],
) -> None:
    """Cut ``validator``'s generated pair sets to the time budget of a run of ``cfg`` with
    ``steps_per_epoch`` optimizer steps per epoch (:func:`image_budget`), before training;
    each set's size is a ``validation_size`` event of ``logger``, and a cut set a line ``say``
    tells the user."""
    per_epoch = steps_per_epoch / cfg.val_every if cfg.val_every else 1
    budget = image_budget(steps_per_epoch * cfg.batch_size * cfg.accumulate, per_epoch)
    for entry in validator.fit(budget):
        sizes = {k: v for k, v in entry.items() if k != "name"}
        logger.event("validation_size", step, set=entry["name"], budget=budget, **sizes)
        if entry["cut"]:
            say(
                f"validation on {entry['name']}: the first {entry['pairs']} pairs "
                f"({entry['images']} images), under {VAL_SHARE:.0%} of an epoch's time "
                "(--max-pairs N sets the number instead)"
            )


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics for logs: accuracy, accuracy_std, best_threshold, auc, eer, tar@far=X."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for far, tar in value.items():
                out[f"tar@far={far:g}" if isinstance(far, float) else f"tar@far={far}"] = float(tar)
        elif isinstance(value, int | float | np.floating | np.integer):
            out[key] = float(value)
    return out
