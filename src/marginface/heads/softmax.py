"""Plain softmax: a linear classifier W x + b, no normalisation and no margin (the baseline)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("softmax")
class Softmax(MarginHead):
    """Logits ``W x + b``: the baseline every margin head is compared against.

    Args:
        embedding_size, num_classes: D and C.
        bias: learn a per-class bias b (default True).
    """

    normalize = False
    scale_policy = "none"

    def __init__(self, embedding_size: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(embedding_size, num_classes, s=1.0)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None

    def hparams(self) -> dict[str, object]:
        return {"bias": self.bias is not None}

    def class_bias(self) -> Tensor | None:
        return self.bias

    def row_scale(self, norms: Tensor) -> Tensor:
        return torch.ones_like(norms)
