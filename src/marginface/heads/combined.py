"""Combined margin (InsightFace): target s * (cos(m1 * theta + m2) - m3), for any m1, m2, m3."""

from __future__ import annotations

from torch import Tensor

from marginface.heads._math import monotone_cos, safe_angle
from marginface.heads.arcface import arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("combined")
class Combined(MarginHead):
    """Target logit ``s * (cos(m1 theta_y + m2) - m3)``.

    (1, 0.5, 0) is ArcFace (with its theta + m > pi fallback), (1, 0, 0.35) CosFace,
    (m, 0, 0) a SphereFace-style multiplicative margin without the lambda blend.  Unlike
    InsightFace's version, m1 != 1 works: theta is taken from cos with finite gradients at
    +-1, and where m1 theta + m2 passes pi the target continues as SphereFace's monotone
    psi, (-1)^k cos(a) - 2k, so it keeps falling with theta.

    Args:
        s: scale (default 64).
        m1, m2, m3: multiplicative angular, additive angular (radians) and additive cosine
            margins (defaults 1, 0.5, 0: ArcFace).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.5,
        m3: float = 0.0,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not m1 > 0:
            raise ValueError(f"m1 must be positive, got {m1}")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(cos_y, norms, m1=self.m1, m2=self.m2, m3=self.m3)

    @classmethod
    def margin_of(
        cls, cos_y: Tensor, norms: Tensor, *, m1: float, m2: float, m3: float, **params: object
    ) -> Tensor:
        if m1 == 1.0:
            return arc_margin(cos_y, m2) - m3
        theta = safe_angle(cos_y.clamp(-1.0, 1.0))
        return monotone_cos(m1 * theta + m2) - m3
