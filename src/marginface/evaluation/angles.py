"""Angles between embeddings and a head's class centres: is each sample nearer its own centre?

A trained margin head pulls every training sample nearer its own class centre than any other;
the share of samples for which that holds (:func:`nearer_own_share`) is how far training got,
independent of the loss's scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def class_centres(head: nn.Module, weight: Tensor | None = None) -> Tensor:
    """The head's class centres (C, D); sub-centre heads give (C, K, D). ``weight``: the rows
    to use instead of ``head.weight`` (e.g. all ranks' rows of a sharded head)."""
    weight = (head.weight if weight is None else weight).detach().float().cpu()
    k = int(getattr(head, "subcenters", 1))
    return weight.view(-1, k, weight.shape[1]) if k > 1 else weight


def centre_angles(
    features: Tensor, labels: Tensor, centres: Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Angles in degrees from each feature (N, D) to its own class centre and to the nearest
    other centre; ``centres`` (C, D), or (C, K, D) for sub-centres (the nearest sub-centre)."""
    x = F.normalize(features.float(), dim=1)
    w = F.normalize(centres.float(), dim=-1)
    if w.dim() == 3:
        cos = torch.einsum("nd,ckd->nck", x, w).amax(dim=2)
    else:
        cos = x @ w.T
    rows = torch.arange(len(x))
    own = cos[rows, labels].clone()
    cos[rows, labels] = -2.0
    other = cos.amax(dim=1)
    to_deg = lambda c: torch.rad2deg(torch.acos(c.clamp(-1.0, 1.0))).numpy()  # noqa: E731
    return to_deg(own), to_deg(other)


@torch.inference_mode()
def embed_raw(backbone: nn.Module, images: Tensor, device: str | torch.device, batch: int = 256):
    """Raw (unnormalised, no flip) embeddings (N, D) in eval mode, on the CPU."""
    was_training = backbone.training
    backbone.eval()
    try:
        parts = [
            backbone(images[i : i + batch].to(device)).float().cpu()
            for i in range(0, len(images), batch)
        ]
        return torch.cat(parts) if parts else torch.empty(0)
    finally:
        backbone.train(was_training)


def nearer_own_share(own_deg: np.ndarray, other_deg: np.ndarray) -> float:
    """Share of samples strictly nearer their own centre than any other."""
    own, other = np.asarray(own_deg), np.asarray(other_deg)
    return float(np.mean(own < other)) if own.size else float("nan")
