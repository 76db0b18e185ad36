"""The base class of the per-class binary heads (SphereFace2, UniFace).

Instead of a softmax over the classes, every class is its own sigmoid classifier, and all
share one learnable bias b.  With the target logit ``P_i = positive_logit(cos theta_{i,y})``
and the others ``N_ij = negative_logit(cos theta_ij)`` (both through :meth:`BinaryHead.bound`),
the loss of a row is::

    L_i = loss_scale * [ positive_weight * softplus(-P_i)
                         + negative_weight * sum_{j != y_i} softplus(N_ij) ]

A subclass gives the two logit maps, the three weights and the initial bias for C classes;
this class turns them into the logits of ``forward``, the dense loss of those logits, and the
loss over a shard of the classes (:meth:`BinaryHead.loss_over`), which ``loss`` computes on one
process and :class:`marginface.parallel.PartialFC` on each.  ``softplus`` is the exact one of
:mod:`marginface.heads._math`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.heads._math import no_autocast, softplus
from marginface.heads.base import MarginHead
from marginface.heads.engine import Shard


class BinaryHead(MarginHead):
    """Per-class binary classifiers with a shared bias ``bias`` (a (1,) parameter set to
    :meth:`initial_bias` by :meth:`init_shared`).  The margin-softmax hooks of
    :class:`MarginHead` (``margin``, ``row_scale``, ...) are not used."""

    loss_kind = "binary"
    scale_policy = "fixed"
    #: factor of the target's term and of the other classes' terms, and of the whole loss
    positive_weight: float = 1.0
    negative_weight: float = 1.0
    loss_scale: float = 1.0

    def __init__(self, embedding_size: int, num_classes: int, s: float) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        self.bias = nn.Parameter(torch.zeros(1))

    # ---------------------------------------------------------------- for subclasses
    def initial_bias(self, num_classes: int | None = None) -> float:
        """The starting value of b for ``num_classes`` classes (default: this head's)."""
        raise NotImplementedError

    def positive_logit(self, cos_y: Tensor) -> Tensor:
        """P: the target's logit from its cosine, any shape."""
        raise NotImplementedError

    def negative_logit(self, cos: Tensor) -> Tensor:
        """N: another class's logit from its cosine, any shape."""
        raise NotImplementedError

    def logit(self, cos: Tensor) -> Tensor:
        """The logit of ``forward(x)`` without labels; N here."""
        return self.negative_logit(cos)

    def bound(self, logits: Tensor) -> Tensor:
        """The logits as the loss reads them (UniFace's optional clamp); unchanged here."""
        return logits

    # ------------------------------------------------------------------- the protocol
    def init_shared(self, num_classes: int) -> None:
        with torch.no_grad():
            self.bias.fill_(self.initial_bias(num_classes))

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, C) binary logits, float32 (float64 for float64 inputs or weight): N, with P in
        each row's target column when labels are given; :meth:`logit` without labels."""
        self.check_inputs(embeddings, labels)
        with no_autocast(embeddings.device.type):
            c = self.scores(embeddings.to(self.compute_dtype(embeddings)))
            if labels is None:
                return self.logit(c)
            labels = labels.long()
            pos = self.positive_logit(c.gather(1, labels[:, None]))
            return self.negative_logit(c).scatter(1, labels[:, None], pos)

    def loss_from_logits(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss of the module doc from the (B, C) logits of ``forward(x, y)``."""
        labels = labels.long()
        logits = self.bound(logits)
        pos = logits.gather(1, labels[:, None]).squeeze(1)
        neg = softplus(logits).scatter(1, labels[:, None], 0.0).sum(dim=1)
        per_row = self.positive_weight * softplus(-pos) + self.negative_weight * neg
        return self.loss_scale * per_row.mean()

    def loss_over(self, shard: Shard) -> Tensor:
        """The loss of the module doc over the classes of ``shard``: the target's terms per
        row, the other classes' as the sum of all classes' negative terms less the target's."""
        pos = self.bound(self.positive_logit(shard.cos_y))
        neg_y = self.bound(self.negative_logit(shard.cos_y))
        w_pos, w_neg = self.positive_weight, self.negative_weight
        target_terms = shard.own(w_pos * softplus(-pos) - w_neg * softplus(neg_y))

        def negatives(z: Tensor, c0: int, c1: int) -> Tensor:
            return softplus(self.bound(self.negative_logit(z))).sum(dim=1)

        total = shard.sum_over_classes(negatives)
        return self.loss_scale * (target_terms + w_neg * total).mean()
