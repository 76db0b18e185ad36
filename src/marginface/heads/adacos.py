"""AdaCos (Zhang et al., CVPR 2019): cosine logits with a scale set from the number of classes
(fixed) or re-estimated from every training batch (dynamic), and no margin.

Paper: "AdaCos: Adaptively Scaling Cosine Logits for Effectively Learning Deep Face
Representations"; its steps as coded in github.com/4uiiurz1/pytorch-adacos (``metrics.py``,
class ``AdaCos``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from marginface.checks import is_int_at_least
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


def adacos_scale(num_classes: int) -> float:
    """AdaCos's fixed scale ``sqrt(2) * log(C - 1)`` for C classes (C >= 3).

    The paper picks s so that the target probability changes fastest near theta = pi/4 when
    the C - 1 non-target cosines are about 0: their sum of exponentials is then C - 1, and
    s cos(pi/4) = log(C - 1).  Two classes give s = 0 (every logit 0, nothing learns) and one
    class none at all, so C < 3 is a ValueError.
    """
    if not is_int_at_least(num_classes, 3):
        raise ValueError(
            f"AdaCos's scale sqrt(2) log(C - 1) needs an int number of classes C >= 3 "
            f"(C = 2 gives s = 0), got {num_classes!r}; give the scale s explicitly"
        )
    return math.sqrt(2.0) * math.log(num_classes - 1)


@register_head("adacos")
class AdaCos(MarginHead):
    """All logits ``s * cos(theta_j)`` (no margin); ``s`` is AdaCos's scale.

    Fixed (``dynamic=False``): ``s = sqrt(2) log(C - 1)`` (:func:`adacos_scale`).

    Dynamic (``dynamic=True``): s starts there and, in each labelled call in training mode,
    is re-estimated from the batch *before* that batch's logits, which use the new value:

        B_avg = (1/B) sum_i sum_{j != y_i} exp(s_old cos theta_ij)
        theta_med = median_i theta_{i, y_i}
        s_new = log(B_avg) / cos(min(pi/4, theta_med))

    The median is torch's (the lower of the two middle values for an even B), as in the
    reference code.  B_avg needs the non-target logits at the old scale: the fused loss
    gets them from one no-grad chunked pass (:meth:`MarginHead.update_scale`), so it never
    holds B x C either.  Where log(B_avg) <= 0 (B_avg <= 1: in practice only with few classes
    whose non-target cosines are negative) the formula would give a scale <= 0, which turns
    the loss upside down: s is then left as it is.

    State: ``scale`` (a float64 buffer, in ``state_dict``; no gradient), read as ``head.s``.
    Eval mode and calls without labels use s without changing it (the reference code also
    updates it in eval mode).  ``head(x)`` gives ``s * cos`` (the reference: plain cos).
    The angles are ``acos`` of the cosines clamped into [-1, 1] (the reference clamps into
    [-1 + 1e-7, 1 - 1e-7], which moves s by a relative 1e-7 at most).

    Args:
        s: the scale (fixed) or its start (dynamic); None (default) for sqrt(2) log(C - 1).
        dynamic: re-estimate s from each training batch.
    """

    scale_policy = "own"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float | None = None,
        dynamic: bool = False,
    ) -> None:
        # the base class checks the sizes and an explicit s before C is used here
        super().__init__(embedding_size, num_classes, s=1.0 if s is None else s)
        if s is None:
            self.s = adacos_scale(num_classes)
        self.dynamic = bool(dynamic)

    @classmethod
    def hparams_for(cls, num_classes: int, hparams: Mapping[str, object]) -> dict[str, object]:
        """The default scale (``s`` None) fixed to :func:`adacos_scale` of ``num_classes``."""
        if hparams.get("s") is None:
            return {**hparams, "s": adacos_scale(num_classes)}
        return dict(hparams)

    @property
    def s(self) -> float:
        """The current scale."""
        return float(self.scale)

    @s.setter
    def s(self, value: float) -> None:
        if "scale" in self._buffers:
            self.scale.fill_(float(value))
        else:
            self.register_buffer("scale", torch.tensor(float(value), dtype=torch.float64))

    @property
    def batch_scaled(self) -> bool:
        return self.dynamic

    def row_scale(self, norms: Tensor) -> Tensor:
        return torch.ones_like(norms.detach()) * self.scale.to(norms.dtype)

    @torch.no_grad()
    def update_scale(self, lse_neg: Tensor, cos_y: Tensor) -> None:
        if cos_y.numel() == 0:
            return
        # log B_avg = log mean_i exp(lse_i), in the log domain: exp(lse) may overflow
        log_b_avg = torch.logsumexp(lse_neg, dim=0) - math.log(lse_neg.numel())
        theta_med = torch.acos(cos_y.clamp(-1.0, 1.0)).median()
        new = log_b_avg / torch.cos(theta_med.clamp(max=math.pi / 4))
        ok = torch.isfinite(new) & (new > 0)
        self.scale.copy_(torch.where(ok, new.to(self.scale.dtype), self.scale))
