"""Is a model trained? ``verify``, ``search`` and ``calibrate`` refuse one that is not (unless
``--allow-untrained``): an untrained network answers every question with confidence (an
untrained ``small_cnn`` scores two different faces at cosine 1.0000), and nothing else would
say so.

A model counts as untrained when either holds:

- its weights are straight from initialisation: it has BatchNorm layers and every one of
  them still has its initial running statistics (mean 0, variance 1 exactly). Any training
  step in train mode moves them, so a trained model never passes, and a freshly built one
  always does: measured on ``small_cnn``, ``iresnet18`` and ``mobilefacenet`` as built (9, 31
  and 50 BatchNorm layers, all at their defaults) against the models trained in the tests.
  (Unrelated images' embeddings are no reliable sign: random noise images scored cosine
  >= 0.99999 on an untrained ``small_cnn`` but 0.61 on an untrained ``iresnet18``.)
- nothing says it was trained: its info has no ``training`` record (``marginface train``
  writes one; a record of 0 steps does not count) and no ``source`` (an imported published
  model), and it is not in the run folder of a ``marginface train`` run that took steps (a
  ``log.jsonl`` with training records, as runs of older versions left).

A model of one's own training loop saved with :func:`~marginface.backbones.save_model` gets a
``training`` record in its info (any mapping, e.g. ``{"steps": 2000, "data": "my faces"}``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


def at_initialisation(model: nn.Module) -> bool:
    """True when ``model`` has BatchNorm layers with running statistics and all of them are at
    their initial values (mean 0, variance 1)."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]
    return bool(norms) and all(
        bool(torch.all(m.running_mean == 0)) and bool(torch.all(m.running_var == 1)) for m in norms
    )


def _trained_run_folder(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` lies in the run folder of a ``marginface train`` run that took steps
    (its ``log.jsonl``, or its parent's for ``best/``, holds a training record)."""
    if path is None:
        return False
    here = Path(path)
    folder = here if here.is_dir() else here.parent
    for candidate in (folder / "log.jsonl", folder.parent / "log.jsonl"):
        if candidate.is_file():
            try:
                with open(candidate, encoding="utf-8", errors="replace") as f:
                    if any('"type": "train"' in line for line in f):
                        return True
            except OSError:
                return False
    return False


def untrained_reason(
    model: nn.Module, info: Mapping[str, Any], path: str | os.PathLike | None = None
) -> str | None:
    """Why ``model`` (with its ``info``, loaded from ``path``) looks untrained, or None."""
    if at_initialisation(model):
        return (
            "its weights are straight from initialisation (every BatchNorm layer still has "
            "running mean 0 and variance 1)"
        )
    training = info.get("training")
    trained = bool(training) and not (isinstance(training, Mapping) and training.get("steps") == 0)
    if not trained and not info.get("source") and not _trained_run_folder(path):
        return (
            "nothing says it was trained (its model.json has no 'training' record from "
            "marginface train and no 'source' from marginface import)"
        )
    return None


def check_trained(
    model: nn.Module,
    info: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    allow: bool = False,
) -> None:
    """ValueError naming ``path`` (where the model was loaded from, if known) and the reason
    when the model looks untrained, unless ``allow`` (``--allow-untrained``)."""
    reason = None if allow else untrained_reason(model, info, path)
    if reason is not None:
        name = f"model {path}" if path is not None else "the model"
        raise ValueError(
            f"refused: {name} looks untrained: {reason}; its scores would mean "
            "nothing. Train or import a model (README.md: 'Use a published model'), or pass "
            "--allow-untrained"
        )
