"""The classifier a run trains with its backbone: a margin head behind one interface.

Two kinds keep it, and the training loop knows neither:

* :class:`ReplicatedHead`, a whole head on every process (``TrainConfig.partial_fc`` false):
  DistributedDataParallel averages its gradients like the backbone's;
* :class:`marginface.parallel.PartialFC` (``partial_fc`` true, implied by a ``sample_rate``
  below 1): the class centres sharded over the processes, which it keeps in step itself.

The interface: ``forward(embeddings, labels) -> loss``; ``head`` (the margin head; with
Partial FC this process's shard of it); ``state_module`` (what :class:`TrainResult` hands
back: the head itself, or the PartialFC); ``attach_optimizer(optimizer)``;
``synchronised_names()`` (tensors DDP must leave alone); ``path`` (the path of the fused loss,
decided once by :func:`build_classifier`); ``full_state_dict()`` /
``load_full_state_dict(state)`` (the state of all classes, as the checkpoint's ``head``; a
collective call when ``collective_state``) and ``full_weight()`` (the centres of all classes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from marginface.heads import MarginHead, choose_path, create_head
from marginface.training.config import TrainConfig
from marginface.training.distributed import DistEnv


class ReplicatedHead(nn.Module):
    """A whole margin head in the interface of PartialFC: ``forward`` gives its loss.

    The checkpoint's ``head`` is the head's own ``state_dict()`` (keys ``weight``, ``bias``,
    its state buffers), as it always was.
    """

    #: saving the state needs no other process
    collective_state = False

    def __init__(self, head: MarginHead, path: str = "auto") -> None:
        super().__init__()
        self.head = head
        self.path = path

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return self.head.loss(embeddings, labels, path=self.path)

    @property
    def state_module(self) -> MarginHead:
        return self.head

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Nothing to do: the optimizer holds the head's parameters themselves."""

    def synchronised_names(self) -> list[str]:
        """None: DDP synchronises the head like the backbone."""
        return []

    def full_state_dict(self) -> dict[str, Any]:
        return self.head.state_dict()

    def load_full_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state)

    def full_weight(self) -> Tensor:
        return self.head.weight.detach()


def build_classifier(
    cfg: TrainConfig, num_classes: int, env: DistEnv, head_kwargs: dict[str, Any]
) -> nn.Module:
    """The run's classifier: a :class:`ReplicatedHead`, or PartialFC when ``cfg.partial_fc``;
    its ``path``, the path of the fused loss on ``env.device``, decided here (a bad
    ``MARGINFACE_FUSED_PATH`` refused) once for the run."""
    classifier = _classifier(cfg, num_classes, env, head_kwargs)
    subcenters = classifier.head.subcenters
    classifier.path = choose_path(env.device, torch.float32, subcenters=subcenters)
    return classifier


def _classifier(
    cfg: TrainConfig, num_classes: int, env: DistEnv, head_kwargs: dict[str, Any]
) -> nn.Module:
    if not cfg.partial_fc:
        return ReplicatedHead(create_head(cfg.head, cfg.embedding_size, num_classes, **head_kwargs))
    from marginface.parallel import PartialFC

    # rank r holds only its shard; DDP averages the backbone's gradients over the W ranks,
    # so the local embeddings' gradient is scaled by W (see docs/parallel.md)
    return PartialFC(
        cfg.head,
        cfg.embedding_size,
        num_classes,
        sample_rate=cfg.sample_rate,
        process_group=None if env.distributed else "local",
        seed=cfg.seed,
        embedding_grad_scale=float(env.world_size),
        **head_kwargs,
    )
