"""What a run writes about itself into every ``model.json`` it saves (and into
``checkpoint.pt``'s ``model_info``): :func:`model_info`, the backbone, head and identities,
with the ``training`` record and the ``calibration`` of the saved weights on the first
validation set (:mod:`marginface.evaluation.calibration`).

``training``: ``steps`` done, ``epochs`` done (steps / steps per epoch), ``final_loss`` (of
the last step), ``data`` (the dataset spec), ``head``, ``date`` (UTC). Its presence is what
tells ``verify`` / ``search`` / ``calibrate`` that the model was trained
(:mod:`marginface.backbones.trained`).

``calibration``: the threshold at FAR 1e-3, or, when the first validation set has too few
impostor pairs for it, at the smallest FAR of 1e-2, 1e-1 it resolves (``far`` says which; no
calibration below 10 impostor pairs), with TAR and its bootstrap interval. Only weights that
were validated are calibrated: a save at a step without a validation carries none, except the
last save of a run stopped by ``max_steps``, for which the validation sets are scored once
more (without a log record). ``marginface train`` prints the final calibration.
"""

from __future__ import annotations

import datetime
from typing import Any


def training_record(trainer: Any) -> dict[str, Any]:
    """The ``training`` record of the run now."""
    last = trainer.history[-1] if trainer.history else {}
    steps = int(last.get("step", 0))
    return {
        "steps": steps,
        "epochs": round(steps / max(1, trainer.built.steps_per_epoch), 4),
        "final_loss": last.get("loss"),
        "data": str(trainer.cfg.data) if trainer.cfg.data else None,
        "head": trainer.cfg.head,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _step(trainer: Any) -> int:
    return int(trainer.history[-1]["step"]) if trainer.history else 0


def calibration_record(trainer: Any) -> dict[str, Any] | None:
    """The calibration of the weights now on the first validation set, if they are the ones
    last validated (cached per step), else None."""
    from marginface.evaluation.calibration import DEFAULT_FAR, calibrate_scores, fitting_far

    validator = getattr(trainer, "validator", None)
    scores = getattr(validator, "last_scores", None)
    step = _step(trainer)
    if not scores or trainer.validated.step != step:
        return None
    cached = trainer.validated.calibration
    if cached is not None and cached[0] == step:
        return cached[1]
    name, (values, pairs) = next(iter(scores.items()))
    far = fitting_far(int((~pairs.issame).sum()), DEFAULT_FAR)
    record = None
    if far is not None and pairs.issame.any():
        record = calibrate_scores(
            values, pairs.issame, far, pairs=name, groups=pairs.groups, flip=True, step=step
        )
    trainer.validated.calibration = (step, record)
    return record


def validate_for_calibration(trainer: Any) -> None:
    """Score the validation sets on the weights now (main process, no log record), so that the
    last save of a run stopped by ``max_steps`` is calibrated."""
    validated = trainer.validated
    if trainer.env.is_main and trainer.validator and validated.step != _step(trainer):
        trainer.validator.run(trainer.built.model.backbone)
        validated.step = _step(trainer)


def run_records(trainer: Any) -> dict[str, Any]:
    """``training`` and ``calibration`` for :func:`model_info`."""
    return {"training": training_record(trainer), "calibration": calibration_record(trainer)}


def model_info(trainer: Any) -> dict[str, Any]:
    """The ``model.json`` info of the backbone ``trainer`` trains (fine-tuned: with the start
    model's input contract and an ``init`` record of where it started)."""
    cfg, built, start = trainer.cfg, trainer.built, trainer.start
    return {
        "backbone": cfg.backbone,
        "backbone_kwargs": dict(built.backbone_kwargs),
        "image_size": cfg.image_size,
        "identity_names": built.identity_names,
        "threshold": trainer.validated.threshold,
        "head": cfg.head,
        "head_kwargs": built.model.head.head.hparams(),
        **(start.inherited() if start else {}),
        **({"init": start.record()} if start else {}),
        **run_records(trainer),  # training record, calibration of validated weights
    }
