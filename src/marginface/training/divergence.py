"""A run that diverged: its loss or its weights became NaN or infinite.

The loop checks the mean loss of every step and the weights after every optimizer step
(:func:`all_finite`: one fused norm per tensor, one sync), and a checkpoint's weights before
they are written; what it finds is a ``diverged`` event and :class:`TrainingDiverged`
(:func:`diverged`), which stops the run and keeps the last good checkpoint: weights that are
not finite are never saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from marginface.training.distributed import all_reduce_sum


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint was kept."""


def all_finite(tensors: list[Tensor]) -> bool:
    """True when every floating tensor is finite (one fused norm per tensor, one sync)."""
    floats = [t.detach() for t in tensors if t.is_floating_point() and t.numel()]
    if not floats:
        return True
    norms = torch._foreach_norm(floats)
    return bool(torch.isfinite(torch.stack([n.float() for n in norms]).sum()))


def diverged(
    output: Path, logger: Any, what: float | str, step: int, epoch: int
) -> TrainingDiverged:
    """The error of a run in ``output`` that diverged at ``step`` (0-based) of ``epoch``, its
    ``diverged`` event logged. ``what``: the non-finite loss, or a description of what became
    non-finite."""
    path = output / "checkpoint.pt"
    kept = (
        f"the last good checkpoint {path} was kept"
        if path.is_file()
        else ("no checkpoint had been saved yet")
    )
    logger.event("diverged", step, loss=str(what), epoch=epoch)
    became = f"the loss became {what}" if isinstance(what, float) else f"{what} appeared"
    return TrainingDiverged(
        f"{became} at step {step + 1} (epoch {epoch}); training stopped and "
        f"{kept}. Try a lower --lr, a longer --warmup-epochs, --grad-clip, or --amp none."
    )


def check_weights(
    model: nn.Module, env: Any, output: Path, logger: Any, position: dict[str, int]
) -> None:
    """:func:`diverged` unless ``model``'s parameters are finite on every process of ``env``
    (collective), after the optimizer step that ends at ``position``."""
    finite = torch.tensor([float(all_finite(list(model.parameters())))])
    if float(all_reduce_sum(finite.double(), env)[0]) < env.world_size:
        raise diverged(output, logger, "non-finite weights", position["step"], position["epoch"])


def check_saved(
    backbone: nn.Module,
    head_state: dict[str, Any] | None,
    output: Path,
    logger: Any,
    position: dict[str, int],
) -> None:
    """:func:`diverged` unless the weights about to be saved at ``position`` (``backbone``'s
    and the classifier's full state ``head_state``) are finite: they are never written."""
    tensors = [*backbone.state_dict().values()]
    tensors += [v for v in (head_state or {}).values() if isinstance(v, Tensor)]
    if not all_finite(tensors):
        step, epoch = position["step"] - 1, position["epoch"]
        raise diverged(output, logger, "non-finite weights", step, epoch)
