"""CurricularFace (Huang et al., CVPR 2020): ArcFace plus an adaptive weight on hard negatives.

Paper: "CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition";
reference code github.com/HuangYG123/CurricularFace (``head/metrics.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from marginface.heads._math import cos_plus
from marginface.heads.arcface import arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("curricularface")
class CurricularFace(MarginHead):
    """Target ``s * cos(theta_y + m)`` (ArcFace, with its fallback ``cos - m sin m`` where
    theta_y + m > pi); a non-target cosine c_j that exceeds the row's ``cos(theta_y + m)``
    (a hard negative) becomes ``c_j (t + c_j)``; the other logits are ``s * c_j``.

    The hard-negative threshold is the plain ``cos(theta_y + m) = c cos m - sin(theta) sin m``
    of each row (no fallback), as in the reference.  ``t`` (buffer, in ``state_dict``,
    initial 0) is the EMA of the batch mean target cosine with momentum 0.01,
    ``t <- 0.01 * mean(cos theta_y) + 0.99 t``; it is updated once per labelled call in
    training mode, before the modulation uses it (as the reference does).  Early in
    training t ~ 0 and hard negatives are damped (easy samples first); as t grows towards 1
    they are emphasised.  The gradient of ``c (t + c)`` is ``t + 2c`` (t held constant).

    Args:
        s: scale (64).  m: angular margin in radians (0.5).
        momentum: EMA momentum of t (0.01).

    A batch with NaN or infinite features leaves ``t`` as it was (its :attr:`state` is
    running statistics).
    """

    state = "running_statistics"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        momentum: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.m, self.momentum = float(m), float(momentum)
        for name, value in self.initial_state().items():
            self.register_buffer(name, value)

    def update_state(self, cos_y: Tensor, norms: Tensor) -> None:
        if cos_y.numel():
            mean = cos_y.mean().to(self.t.dtype)
            self.t.mul_(1.0 - self.momentum).add_(self.momentum * mean)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(cos_y, norms, m=self.m)

    @classmethod
    def margin_of(cls, cos_y: Tensor, norms: Tensor, *, m: float, **params: object) -> Tensor:
        return arc_margin(cos_y, m)

    @classmethod
    def initial_state(cls) -> dict[str, Tensor]:
        return {"t": torch.tensor(0.0)}

    def negative_modulation(self, cos_y: Tensor, norms: Tensor) -> tuple[Tensor, float]:
        c = cos_y.detach().clamp(-1.0, 1.0)
        threshold = cos_plus(c, self.m)
        return threshold, float(self.t)
