"""Verification during training on pair sets (``--pairs SPEC``, several allowed).

Pair sets come from ``marginface.data.open_pairs`` and are scored with
``marginface.evaluation.evaluate_pairs`` (flip test, LFW-style folds). Validation runs with the
random number generators forked, so it never changes the training's random stream (an
interrupted-and-resumed run stays identical to an uninterrupted one).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn


class Validator:
    """Opens the pair sets once and evaluates a backbone on all of them.

    Args:
        specs: pair-set specs for ``open_pairs`` (a .bin, a pairs.txt, a dataset spec).
        image_size: side of the images the backbone takes.
        max_pairs, batch_size, device: passed on to ``open_pairs`` / ``evaluate_pairs``.
        max_bad: unreadable images allowed per set (None: no limit).
    """

    def __init__(
        self,
        specs: list[str],
        image_size: int,
        max_pairs: int = 3000,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
        max_bad: int | None = None,
    ) -> None:
        from marginface.data import open_pairs

        self.sets = []
        self.specs = list(specs)
        names: set[str] = set()
        for spec in specs:
            pairs = open_pairs(spec, image_size=image_size, max_pairs=max_pairs)
            inner = getattr(pairs.images, "dataset", None)
            if inner is not None and hasattr(inner, "max_bad"):
                inner.max_bad = max_bad
            name = str(getattr(pairs, "name", spec)) or spec
            while name in names:  # two sets with one name (e.g. two synthetic specs)
                name += "'"
            names.add(name)
            self.sets.append((name, pairs))
        self.batch_size, self.device = batch_size, device

    def __bool__(self) -> bool:
        return bool(self.sets)

    def images_per_run(self) -> int:
        """Images one validation embeds (every set)."""
        return sum(len(pairs.images) for _, pairs in self.sets)

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
                    metrics, _ = evaluate_pairs(backbone, pairs, options)
                    results[name] = metrics
                return results
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            backbone.train(was_training)


def score_of(results: dict[str, dict[str, Any]]) -> float:
    """The number the best checkpoint is chosen by: mean accuracy over the pair sets."""
    return float(np.mean([m["accuracy"] for m in results.values()]))


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
