"""The heads' formulas written out by hand, row by row, in float64 with the math module.

Deliberately independent of marginface's implementation: no shared helpers.
"""

from __future__ import annotations

import math

import torch


def normalized_cosines(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    x = x.double()
    w = w.double()
    xn = x / x.norm(dim=1, keepdim=True)
    wn = w / w.norm(dim=1, keepdim=True)
    return xn @ wn.t()


def psi(angle: torch.Tensor) -> torch.Tensor:
    """SphereFace's monotone extension of cos: (-1)^k cos(a) - 2k, k = floor(a / pi)."""
    k = math.floor(float(angle.detach()) / math.pi)
    return (-1) ** k * torch.cos(angle) - 2 * k


def target_cosine(name: str, c: torch.Tensor, hp: dict, lamb: float | None = None) -> torch.Tensor:
    """The modified target cosine (before scaling) of head ``name`` for a 0-d cos(theta) = c.

    Branches are chosen on the value; the arithmetic stays in torch so that it differentiates.
    """
    c = c.clamp(-1.0, 1.0)
    theta = torch.acos(c)
    t = float(theta.detach())
    if name == "normface":
        return c
    if name == "cosface":
        return c - hp.get("m", 0.35)
    if name == "arcface":
        m = hp.get("m", 0.5)
        if hp.get("easy_margin", False):
            return torch.cos(theta + m) if float(c.detach()) > 0 else c
        return torch.cos(theta + m) if t + m < math.pi else c - m * math.sin(m)
    if name == "combined":
        m1, m2, m3 = hp.get("m1", 1.0), hp.get("m2", 0.5), hp.get("m3", 0.0)
        if m1 == 1.0:
            base = torch.cos(theta + m2) if t + m2 < math.pi else c - m2 * math.sin(m2)
        else:
            base = psi(m1 * theta + m2)
        return base - m3
    if name == "sphereface":
        m = hp.get("m", 4)
        return (lamb * c + psi(m * theta)) / (1.0 + lamb)
    raise KeyError(name)


def sphereface_lambda(iteration: int, hp: dict) -> float:
    base, gamma = hp.get("base", 1000.0), hp.get("gamma", 0.12)
    power, lmin = hp.get("power", 1.0), hp.get("lambda_min", 5.0)
    return max(lmin, base * (1.0 + gamma * iteration) ** (-power))


def reference_logits(
    name: str,
    x: torch.Tensor,
    w: torch.Tensor,
    labels: torch.Tensor | None,
    hp: dict,
    bias: torch.Tensor | None = None,
    iteration: int = 0,
) -> torch.Tensor:
    """Logits (B, C) in float64 as the papers define them."""
    if name == "softmax":
        out = x.double() @ w.double().t()
        return out + bias.double() if bias is not None else out
    cos = normalized_cosines(x, w)
    if name == "sphereface":
        row = x.double().norm(dim=1)
    else:
        row = torch.full((x.shape[0],), float(hp.get("s", 64.0)), dtype=torch.float64)
    out = cos * row[:, None]
    if labels is None:
        return out
    lamb = sphereface_lambda(iteration, hp) if name == "sphereface" else None
    out = out.clone()
    for i, y in enumerate(labels.tolist()):
        out[i, y] = row[i] * target_cosine(name, cos[i, y], hp, lamb)
    return out
