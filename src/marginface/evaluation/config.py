"""What an evaluation run (``marginface eval``) evaluates, and how: :class:`EvalConfig`,
checked when it is made (the first broken rule is a ValueError)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from marginface.checks import is_int_at_least
from marginface.evaluation.metrics import THRESHOLD_GRIDS


@dataclass
class EvalConfig:
    """The settings of :func:`marginface.evaluation.evaluate.run_evaluation`.

    ``checkpoints``: run folders, ``model.pt`` or ``checkpoint.pt`` files. ``pairs``: pair-set
    specs for ``marginface.data.open_pairs`` (``.bin``, ``pairs.txt``, dataset specs such as
    ``synthetic:50x6,first=1000``); ``max_pairs`` is passed to it.

    ``n_folds``: folds of the accuracy; None: what a pairs file's header says (LFW's
    ``10 300``: 10), else 10. A header that disagrees with a given ``n_folds``, and a fold that
    holds one class only, are warnings (:func:`marginface.evaluation.folds.fold_warnings`).
    ``fold_seed``: cut the folds from the pairs shuffled by this seed (None: in order, LFW's
    protocol); see :func:`marginface.evaluation.embed.fold_order`. ``threshold_grid``:
    ``exact`` (every distinct score) or ``insightface`` (InsightFace's grid of squared
    distances, to compare with papers); see :mod:`marginface.evaluation.metrics`.

    ``identification``: a dataset spec (folder of identity sub-folders) for rank-1 / rank-5 /
    CMC; ``gallery_list`` / ``probe_list`` (text files of image paths relative to the folder)
    override the default split (first image of each identity = gallery).

    ``ijb``: an IJB-B or IJB-C folder (``meta/`` and ``loose_crop/``): 1:1 template
    verification as InsightFace's eval_ijbc.py computes it (:mod:`marginface.evaluation.ijb`);
    ``ijb_target`` IJBB or IJBC when the folder holds both. ``title``: the report's title.
    """

    checkpoints: list[str | os.PathLike] = field(default_factory=list)
    pairs: list[str] = field(default_factory=list)
    max_pairs: int = 3000
    n_folds: int | None = None
    fold_seed: int | None = None
    threshold_grid: str = "exact"
    identification: str | None = None
    gallery_list: str | os.PathLike | None = None
    probe_list: str | os.PathLike | None = None
    ijb: str | os.PathLike | None = None
    ijb_target: str | None = None
    title: str = "marginface evaluation"

    def __post_init__(self) -> None:
        self.checkpoints = list(self.checkpoints or [])
        self.pairs = list(self.pairs or [])
        self.validate()

    def validate(self) -> None:
        """ValueError for what cannot be evaluated: the sets asked for first, then each key."""
        if not self.pairs and self.identification is None and self.ijb is None:
            raise ValueError("give at least one pair set (--pairs), --identification or --ijb")
        if (self.gallery_list is None) != (self.probe_list is None):
            raise ValueError("give both a gallery list and a probe list, or neither")
        if self.gallery_list is not None and self.identification is None:
            raise ValueError("gallery/probe lists need an identification folder")
        self._need(all(isinstance(p, str) for p in self.pairs), "pairs", "must be pair-set specs")
        self._need(is_int_at_least(self.max_pairs, 1), "max_pairs", "must be an int >= 1")
        self._need(
            self.n_folds is None or is_int_at_least(self.n_folds, 2),
            "n_folds",
            "must be None (the header's, else 10) or an int >= 2",
        )
        self._need(
            self.fold_seed is None
            or (isinstance(self.fold_seed, int) and not isinstance(self.fold_seed, bool)),
            "fold_seed",
            "must be None (in order) or an int",
        )
        self._need(
            self.threshold_grid in THRESHOLD_GRIDS,
            "threshold_grid",
            f"must be one of {', '.join(THRESHOLD_GRIDS)}",
        )
        self._need(isinstance(self.title, str), "title", "must be text")

    def _need(self, ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ValueError(f"eval config {key}: {what}, got {getattr(self, key)!r}")
