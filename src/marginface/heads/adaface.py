"""AdaFace (Kim, Jain & Liu, CVPR 2022): a margin that adapts to image quality via the feature norm.

Paper: "AdaFace: Quality Adaptive Margin for Face Recognition"; reference code
github.com/mk-minchul/AdaFace (``head.py``, class ``AdaFace``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("adaface")
class AdaFace(MarginHead):
    """Target ``s * (cos(clip(theta_y + g_angle, eps, pi - eps)) - g_add)``, others ``s * cos``.

    With ``a = clip(‖x‖, 0.001, 100)`` (detached: no gradient through the norm),
    ``z = clip(h * (a - mu) / (sigma + eps), -1, 1)``, ``g_angle = -m z`` and
    ``g_add = m + m z``: high-norm (good quality) samples get an ArcFace-like angular margin
    (up to m), low-norm ones a CosFace-like additive margin (up to 2m), so hard samples of
    good quality are emphasised and those of bad quality are not.  theta_y is
    ``acos(clamp(cos, -1 + eps, 1 - eps))`` and eps = 1e-3, as in the reference code.

    State (buffers, saved in ``state_dict``): ``batch_mean`` mu and ``batch_std`` sigma, the
    EMA of the batch mean and (unbiased) standard deviation of a, initialised 20 and 100 as in
    the reference; each labelled call in training mode first updates them,
    ``mu <- t_alpha * mean(a) + (1 - t_alpha) * mu`` (same for sigma; a batch of one
    sample leaves sigma unchanged), then computes z with the new values. A batch with NaN or
    infinite features leaves both as they were (its :attr:`state` is running statistics).

    Args:
        s: scale (64).  m: margin (0.4).  h: concentration of z (0.333).
        t_alpha: EMA momentum (0.01, the reference training config).
    """

    eps: float = 1e-3
    state = "running_statistics"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not 0.0 <= t_alpha <= 1.0:
            raise ValueError(f"t_alpha must lie in [0, 1], got {t_alpha}")
        self.m, self.h, self.t_alpha = float(m), float(h), float(t_alpha)
        for name, value in self.initial_state().items():
            self.register_buffer(name, value)

    @classmethod
    def initial_state(cls) -> dict[str, Tensor]:
        return {"batch_mean": torch.tensor(20.0), "batch_std": torch.tensor(100.0)}

    @staticmethod
    def safe_norms(norms: Tensor) -> Tensor:
        """clip(‖x‖, 0.001, 100), detached."""
        return norms.detach().clamp(0.001, 100.0)

    def margin_scaler(self, norms: Tensor) -> Tensor:
        """z = clip(h (a - mu) / (sigma + eps), -1, 1), (B,)."""
        return self.scaler_of(norms, h=self.h, batch_mean=self.batch_mean, batch_std=self.batch_std)

    @classmethod
    def scaler_of(cls, norms: Tensor, *, h: float, batch_mean: Tensor, batch_std: Tensor) -> Tensor:
        """:meth:`margin_scaler` for the concentration h and the statistics mu, sigma given."""
        a = cls.safe_norms(norms)
        mu, sigma = batch_mean.to(a.dtype), batch_std.to(a.dtype)
        return ((a - mu) / (sigma + cls.eps) * h).clamp(-1.0, 1.0)

    def update_state(self, cos_y: Tensor, norms: Tensor) -> None:
        a = self.safe_norms(norms)
        if a.numel() == 0:
            return
        alpha = self.t_alpha
        self.batch_mean.mul_(1 - alpha).add_(alpha * a.mean().to(self.batch_mean.dtype))
        if a.numel() > 1:
            self.batch_std.mul_(1 - alpha).add_(alpha * a.std().to(self.batch_std.dtype))

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(
            cos_y,
            norms,
            m=self.m,
            h=self.h,
            batch_mean=self.batch_mean,
            batch_std=self.batch_std,
        )

    @classmethod
    def margin_of(
        cls,
        cos_y: Tensor,
        norms: Tensor,
        *,
        m: float,
        h: float,
        batch_mean: Tensor,
        batch_std: Tensor,
        **params: object,
    ) -> Tensor:
        z = cls.scaler_of(norms, h=h, batch_mean=batch_mean, batch_std=batch_std)
        eps = cls.eps
        theta = torch.acos(cos_y.clamp(-1.0 + eps, 1.0 - eps))
        theta_m = (theta - m * z).clamp(eps, math.pi - eps)
        return torch.cos(theta_m) - (m + m * z)
