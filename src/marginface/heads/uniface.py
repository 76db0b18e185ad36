"""UniFace (Zhou et al., ICCV 2023): the unified cross-entropy (UCE) loss.

Paper: "UniFace: Unified Cross-Entropy Loss for Deep Face Recognition"; reference code
github.com/CVI-SZU/UniFace (``head.py``, ``Unified_Cross_Entropy_Loss``).

Every class is a binary classifier sharing one learnable bias b, so that a single threshold
b / s separates positive from negative pairs for all classes::

    L_i = softplus(-(s (cos theta_y - m) - b)) + lambda * sum_{j != y} softplus(s cos theta_j - b)

b starts at log(10 C) as in the reference (C classes; the reference's partial-FC rate r = 1).
The loss is :class:`marginface.heads.binary.BinaryHead`'s with weights 1 and lambda.
"""

from __future__ import annotations

import math

from torch import Tensor

from marginface.heads.binary import BinaryHead
from marginface.heads.registry import register_head


@register_head("uniface")
class UniFace(BinaryHead):
    """UCE loss: logits ``s (cos theta_y - m) - b`` (target), ``s cos theta_j - b`` (others).

    ``forward(x, y)`` gives these (B, C) sigmoid logits, ``forward(x)`` gives ``s cos - b``;
    :meth:`loss` is the UCE above, summed over classes, mean over the batch, computed in
    blocks of classes unless ``fused=False``.  With ``clamp`` the logits are clamped into
    [-s, s] before the softplus, as the reference code does (it zeroes the gradient of
    positives with ``s (c - m) - b < -s``); the default follows the paper's equation.

    Args:
        s: scale (64).  m: cosine margin (0.4).  lamb: weight lambda of the negatives (1.0).
        clamp: clamp logits into [-s, s] like the reference code (False).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.4,
        lamb: float = 1.0,
        clamp: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not lamb >= 0:
            raise ValueError(f"lamb must be >= 0, got {lamb}")
        self.m, self.lamb, self.clamp = float(m), float(lamb), bool(clamp)
        self.init_shared(num_classes)

    def initial_bias(self, num_classes: int | None = None) -> float:
        """log(10 C), the reference's start (C: ``num_classes``, default this head's)."""
        return math.log(10.0 * (self.num_classes if num_classes is None else num_classes))

    @property
    def negative_weight(self) -> float:  # type: ignore[override]
        return self.lamb

    def positive_logit(self, cos_y: Tensor) -> Tensor:
        return self.s * (cos_y - self.m) - self.bias.to(cos_y.dtype)

    def negative_logit(self, cos: Tensor) -> Tensor:
        return self.s * cos - self.bias.to(cos.dtype)

    def bound(self, logits: Tensor) -> Tensor:
        return logits.clamp(-self.s, self.s) if self.clamp else logits
