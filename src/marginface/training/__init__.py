"""Training: ``train(config) -> TrainResult``, the real main of ``marginface train``.

    >>> from marginface.training import TrainConfig, train
    >>> cfg = TrainConfig(data="synthetic:20x10", backbone="small_cnn", head="arcface",
    ...                   image_size=32, embedding_size=64, batch_size=32, epochs=1,
    ...                   output="runs/demo")  # doctest: +SKIP
    >>> result = train(cfg)  # doctest: +SKIP

Modules: ``config`` (TrainConfig, YAML, overrides), ``run`` (what a run trains, built from its
config), ``loop`` (the loop), ``optim`` (optimizers and schedules), ``sampler`` (deterministic,
resumable data order), ``checkpoint`` (training checkpoints: payload, resume, the step
boundary, RNG states), ``distributed`` (torchrun / DDP), ``validation``, ``logger``,
``preflight`` (output folder and disk checks).
"""

from marginface.training.config import TrainConfig, load_yaml, resolve_config
from marginface.training.loop import TrainingDiverged, TrainResult, train
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
