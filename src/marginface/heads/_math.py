"""Numerically safe pieces shared by the heads (finite values and gradients at cos = +-1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: the norm floor of every normalisation of features and class centres (as ``F.normalize``)
EPS = 1e-12


def no_autocast(device_type: str) -> torch.autocast:
    """A context in which autocast is off: the heads compute their logits and losses in
    float32 (float64 for float64 inputs) whatever autocast the backbone ran under."""
    return torch.autocast(device_type=device_type, enabled=False)


def safe_sine(cos: Tensor) -> Tensor:
    """sin(theta) = sqrt(1 - cos^2) for cos in [-1, 1], with a finite (zero) gradient at |cos| = 1.

    The plain ``sqrt(1 - c**2)`` has an infinite derivative where c = +-1, which turns into
    NaN gradients when an embedding lies exactly on (or opposite) its class centre.
    """
    u = 1.0 - cos * cos
    positive = u > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, u, torch.ones_like(u))), 0.0)


def cos_plus(cos: Tensor, m: float | Tensor) -> Tensor:
    """cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m), from ``cos`` in [-1, 1], for one
    angle m or a tensor of them; no fallback where theta + m > pi (see ``arc_margin``)."""
    if isinstance(m, Tensor):
        return cos * torch.cos(m) - safe_sine(cos) * torch.sin(m)
    return cos * math.cos(m) - safe_sine(cos) * math.sin(m)


def safe_angle(cos: Tensor) -> Tensor:
    """theta = acos(cos) in [0, pi] with finite gradients at cos = +-1 (atan2 of safe_sine)."""
    return torch.atan2(safe_sine(cos), cos)


def chebyshev_cos_multiple(cos: Tensor, m: int) -> Tensor:
    """cos(m * theta) as the Chebyshev polynomial T_m(cos theta), for an integer m >= 0."""
    prev, cur = torch.ones_like(cos), cos
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos * cur - prev
    return cur


def monotone_cos(angle: Tensor) -> Tensor:
    """psi(a) = (-1)^k cos(a) - 2k, k = floor(a / pi): cos(a) on [0, pi], extended to keep falling.

    This is SphereFace's psi written for any angle a >= 0; it is continuous and decreasing.
    """
    k = torch.floor(angle.detach() / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(angle) - 2.0 * k


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), exact at every x (``F.softplus`` returns x itself above 20, an error
    of up to 2e-9 in value and gradient), stable for large |x|; gradient sigmoid(x)."""
    return torch.logaddexp(x, x.new_zeros(()))
