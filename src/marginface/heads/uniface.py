"""UniFace (Zhou et al., ICCV 2023): the unified cross-entropy (UCE) loss.

Paper: "UniFace: Unified Cross-Entropy Loss for Deep Face Recognition"; reference code
github.com/CVI-SZU/UniFace (``head.py``, ``Unified_Cross_Entropy_Loss``).

Every class is a binary classifier sharing one learnable bias b, so that a single threshold
b / s separates positive from negative pairs for all classes::

    L_i = softplus(-(s (cos theta_y - m) - b)) + lambda * sum_{j != y} softplus(s cos theta_j - b)

b starts at log(10 C) as in the reference (C classes; the reference's partial-FC rate r = 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.heads._chunked import chunk_reduce, softplus, target_cosine
from marginface.heads._math import EPS, no_autocast
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("uniface")
class UniFace(MarginHead):
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
        self.bias = nn.Parameter(torch.tensor([math.log(10.0 * num_classes)]))

    def _c(self, logits: Tensor) -> Tensor:
        return logits.clamp(-self.s, self.s) if self.clamp else logits

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, C) binary logits, float32 (float64 for float64 inputs or weight)."""
        self.check_inputs(embeddings, labels)
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self._compute_dtype(embeddings))
            logits = self.s * self.scores(x) - self.bias.to(x.dtype)
            if labels is None:
                return logits
            labels = labels.long()
            pos = logits.gather(1, labels[:, None]) - self.s * self.m
            return logits.scatter(1, labels[:, None], pos)

    def loss_from_logits(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The UCE loss from the (B, C) logits of ``forward(x, y)``."""
        labels = labels.long()
        logits = self._c(logits)
        pos = logits.gather(1, labels[:, None]).squeeze(1)
        neg = softplus(logits).scatter(1, labels[:, None], 0.0).sum(dim=1)
        return (softplus(-pos) + self.lamb * neg).mean()

    def loss(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        fused: bool = True,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
    ) -> Tensor:
        """Mean over the batch of the UCE loss; never holds B x C if ``fused``."""
        self.check_loss_inputs(embeddings, labels)
        if not fused:
            return self.loss_from_logits(self(embeddings, labels), labels)
        labels = labels.long()
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self._compute_dtype(embeddings))
            b = self.bias.to(x.dtype)
            c_y = target_cosine(x, self._w(x.dtype), labels)
            pos = self._c(self.s * (c_y - self.m) - b)
            neg_y = self._c(self.s * c_y - b)

            def block(z: Tensor, c0: int, c1: int) -> Tensor:
                return softplus(self._c(self.s * z - b)).sum(dim=1)

            xn = F.normalize(x, dim=1, eps=EPS)
            total = chunk_reduce(
                block, xn, self._w(x.dtype), chunk_size=chunk_size, memory_budget=memory_budget
            ).sum(dim=1)
            return (softplus(-pos) + self.lamb * (total - softplus(neg_y))).mean()
