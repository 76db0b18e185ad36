"""Training: ``train(config) -> TrainResult``, the real main of ``marginface train``.

    >>> from marginface.training import TrainConfig, train
    >>> cfg = TrainConfig(data="synthetic:20x10", backbone="small_cnn", head="arcface",
    ...                   image_size=32, embedding_size=64, batch_size=32, epochs=1,
    ...                   output="runs/demo")  # doctest: +SKIP
    >>> result = train(cfg)  # doctest: +SKIP

Modules: ``config`` (TrainConfig, YAML, overrides), ``run`` (what a run trains, built from its
config, and what it says as it starts), ``loop`` (the loop: ``train`` and its Trainer),
``result`` (TrainResult), ``optim`` (optimizers, schedules, an optimizer step), ``sampler``
(deterministic, resumable data order, an epoch's loader), ``checkpoint`` (training
checkpoints: payload, resume and resharding, the step boundary, RNG states), ``distributed``
(torchrun / DDP), ``validation`` (the pair sets, their size, what validations found),
``record`` (model.json's info), ``divergence`` (NaN / inf loss or weights), ``estimate`` (a
CPU run's time), ``eta``, ``summary`` and ``verdict`` (the end of a run), ``logger``,
``preflight`` (output folder and disk checks).
"""

from marginface.training.config import TrainConfig, load_yaml, resolve_config
from marginface.training.divergence import TrainingDiverged
from marginface.training.loop import train
from marginface.training.result import TrainResult
from marginface.training.run import TrainModule

__all__ = [
    "TrainConfig",
    "TrainModule",
    "TrainResult",
    "TrainingDiverged",
    "load_yaml",
    "resolve_config",
    "train",
]
