"""ArcFace (Deng et al., CVPR 2019): additive angular margin, target s * cos(theta + m)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads._math import cos_plus
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


def arc_margin(cos_y: Tensor, m: float | Tensor, easy_margin: bool = False) -> Tensor:
    """cos(theta + m) with ArcFace's rules, from cos(theta), shape kept.

    Where theta + m > pi (cos < cos(pi - m)) the target would stop falling with theta, so it is
    replaced by ``cos - m sin m`` (InsightFace's and arcface-pytorch's fallback).  With
    ``easy_margin`` the margin applies only where cos > 0.  Finite gradients at cos = +-1.
    ``m`` is one margin for all rows or a tensor of one per row (ElasticFace, MagFace).
    """
    c = cos_y.clamp(-1.0, 1.0)
    phi = cos_plus(c, m)
    if easy_margin:
        return torch.where(c > 0, phi, c)
    if isinstance(m, Tensor):
        return torch.where(c > torch.cos(math.pi - m), phi, c - torch.sin(m) * m)
    return torch.where(c > math.cos(math.pi - m), phi, c - math.sin(m) * m)


@register_head("arcface")
class ArcFace(MarginHead):
    """Target logit ``s * cos(theta_y + m)``; other logits ``s * cos(theta_j)``.

    Args:
        s: scale (default 64; arcface-pytorch's ArcMarginProduct uses 30).
        m: angular margin in radians (default 0.5).
        easy_margin: apply the margin only where cos(theta_y) > 0.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(cos_y, norms, m=self.m, easy_margin=self.easy_margin)

    @classmethod
    def margin_of(
        cls, cos_y: Tensor, norms: Tensor, *, m: float, easy_margin: bool, **params: object
    ) -> Tensor:
        return arc_margin(cos_y, m, easy_margin)
