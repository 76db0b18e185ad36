"""CosFace / AM-Softmax (Wang et al., 2018): additive cosine margin, target s * (cos - m)."""

from __future__ import annotations

from torch import Tensor

from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("cosface")
class CosFace(MarginHead):
    """Target logit ``s * (cos(theta_y) - m)``; other logits ``s * cos(theta_j)``.

    Args:
        s: scale (default 64; arcface-pytorch's AddMarginProduct uses 30).
        m: cosine margin (default 0.35; arcface-pytorch's uses 0.40).
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__(embedding_size, num_classes, s=s)
        self.m = float(m)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(cos_y, norms, m=self.m)

    @classmethod
    def margin_of(cls, cos_y: Tensor, norms: Tensor, *, m: float, **params: object) -> Tensor:
        return cos_y - m
