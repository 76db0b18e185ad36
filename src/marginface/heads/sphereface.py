"""SphereFace / A-Softmax (Liu et al., CVPR 2017): multiplicative angular margin psi(m theta)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads._math import chebyshev_cos_multiple
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


def sphere_psi(cos_y: Tensor, m: int) -> Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi), from cos(theta).

    cos(m theta) is the Chebyshev polynomial T_m(cos theta) (as ``mlambda`` of arcface-pytorch's
    metrics.py), so the value and its gradient are polynomial in cos: finite at cos = +-1.  k is
    piecewise constant.
    """
    c = cos_y.clamp(-1.0, 1.0)
    k = torch.floor(m * torch.acos(c.detach()) / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * chebyshev_cos_multiple(c, m) - 2.0 * k


@register_head("sphereface")
class SphereFace(MarginHead):
    """A-Softmax as arcface-pytorch's metrics.py has it: target
    ``‖x‖ (lambda cos + psi(theta)) / (1 + lambda)``, other logits ``‖x‖ cos(theta_j)``.

    lambda = max(lambda_min, base * (1 + gamma * iteration) ** -power) anneals from about
    ``base`` towards ``lambda_min``; ``iteration`` is a buffer (saved in ``state_dict``) that
    advances once per labelled call in training mode, before lambda is computed.

    Args:
        m: integer angular margin (default 4).
        base, gamma, power, lambda_min: the annealing schedule (1000, 0.12, 1, 5).
    """

    scale_policy = "feature_norm"
    state = "steps"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
    ) -> None:
        if isinstance(m, bool) or int(m) != m or m < 1:
            raise ValueError(f"m must be a positive integer for sphereface, got {m!r}")
        super().__init__(embedding_size, num_classes, s=1.0)
        self.m = int(m)
        self.base, self.gamma = float(base), float(gamma)
        self.power, self.lambda_min = float(power), float(lambda_min)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @property
    def lamb(self) -> float:
        """The current lambda of the annealing schedule."""
        it = int(self.iteration)
        return max(self.lambda_min, self.base * (1.0 + self.gamma * it) ** (-self.power))

    def update_state(self, cos_y: Tensor, norms: Tensor) -> None:
        self.iteration += 1

    def row_scale(self, norms: Tensor) -> Tensor:
        return norms

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        lamb = self.lamb
        return (lamb * cos_y + sphere_psi(cos_y, self.m)) / (1.0 + lamb)
