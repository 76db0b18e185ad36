"""SphereFace2 (Wen, Liu et al., ICLR 2022): one-vs-all binary classification on the hypersphere.

Paper: "SphereFace2: Binary Classification is All You Need for Deep Face Recognition";
reference code github.com/ydwen/opensphere (``model/head/sphereface2{a,c,m}.py`` of the
ICLR branch, ``opensphere/module/head/sphereface2.py`` now).

Instead of a softmax over classes, every class is its own binary classifier with logit
``r * sim + b`` (a shared learnable bias b) and the loss is a weighted sum of softplus terms::

    L_i = (lw / r) * [ lambda * softplus(-(r * P(c_iy) + b))
                       + (1 - lambda) * sum_{j != y} softplus(r * N(c_ij) + b) ]

with the similarity adjustment ``g(c) = 2 ((c + 1) / 2)^t - 1`` and the margin variants

    ============  ==============================  ======================
    variant       P (target)                      N (other classes)
    ============  ==============================  ======================
    C (cosine)    g(c) - m                        g(c) + m
    A (angular)   g(cos(min(theta + m, pi)))      g(c)
    M (multipl.)  g(cos(min(m theta, pi)))        g(c)
    ============  ==============================  ======================

The bias starts at the value the paper derives (Appendix: the b that balances the expected
positive and negative terms at theta = pi/2 for all classes).  ``lw`` is the official code's
overall loss weight (50; the paper's equation has none): it only rescales the gradient to the
size the usual learning rates expect.  With ``gradient_detach`` (default, as the official
code does now for all three variants) the adjustment and margin change the logit's value but
not its gradient, which is that of ``r * c`` (SphereFace-R's characteristic gradient
detachment); with False the gradient goes through g and the margin (the ICLR branch's C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.heads._chunked import chunk_reduce, softplus, target_cosine
from marginface.heads._math import EPS, no_autocast, safe_angle, safe_sine
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head

_DEFAULT_M = {"C": 0.4, "A": 0.5, "M": 1.7}


@register_head("sphereface2")
class SphereFace2(MarginHead):
    """SphereFace2's binary classifiers: logits ``r * P(c_y) + b`` (target), ``r * N(c_j) + b``.

    ``forward(x, y)`` gives these (B, C) sigmoid logits; ``forward(x)`` gives
    ``r * g(c) + b``; :meth:`loss` is the weighted softplus loss above, mean over the batch,
    computed in blocks of classes (never the whole B x C) unless ``fused=False``.

    Args:
        r: scale (40).  m: margin (None: the variant's default, C 0.4, A 0.5, M 1.7).
        lamb: weight lambda of the positive term (0.7).  t: exponent of g (3).
        variant: "C", "A" or "M".  loss_weight: lw (50).
        gradient_detach: value of g and margin, gradient of r*c (True).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        r: float = 40.0,
        m: float | None = None,
        lamb: float = 0.7,
        t: float = 3.0,
        variant: str = "C",
        loss_weight: float = 50.0,
        gradient_detach: bool = True,
    ) -> None:
        variant = str(variant).upper()
        if variant not in _DEFAULT_M:
            raise ValueError(f"variant must be 'C', 'A' or 'M', got {variant!r}")
        if not 0.0 < lamb < 1.0:
            raise ValueError(f"lamb must lie in (0, 1), got {lamb}")
        if not t > 0:
            raise ValueError(f"t must be positive, got {t}")
        super().__init__(embedding_size, num_classes, s=r)
        self.r, self.variant = float(r), variant
        self.m = float(_DEFAULT_M[variant] if m is None else m)
        if variant == "M" and not self.m > 0:
            raise ValueError(f"variant M needs m > 0, got {self.m}")
        self.lamb, self.t = float(lamb), float(t)
        self.loss_weight, self.gradient_detach = float(loss_weight), bool(gradient_detach)
        self.bias = nn.Parameter(torch.tensor([self.initial_bias()]))

    # ------------------------------------------------------------------ the formulas
    def initial_bias(self) -> float:
        """The paper's initial b for this head's r, m, lambda, t, variant and C (C - 1 is
        taken as 1 for a single class, where the paper's formula is undefined)."""
        r, m, lam = self.r, self.m, self.lamb
        z = lam / ((1.0 - lam) * max(self.num_classes - 1.0, 1.0))
        g0 = 2.0 * 0.5**self.t - 1.0
        if self.variant == "C":
            ay, ai = r * (g0 - m), r * (g0 + m)
        else:
            theta_y = min(math.pi, math.pi / 2 + m if self.variant == "A" else m * math.pi / 2)
            ay, ai = r * (2.0 * ((math.cos(theta_y) + 1.0) / 2.0) ** self.t - 1.0), r * g0
        tmp = (1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai)
        return math.log(2.0 * z) - ai - math.log(1.0 - z + math.sqrt(tmp))

    def adjust(self, c: Tensor) -> Tensor:
        """g(c) = 2 ((c + 1) / 2)^t - 1."""
        return 2.0 * ((c.clamp(-1.0, 1.0) + 1.0) / 2.0) ** self.t - 1.0

    def _st(self, c: Tensor, value: Tensor) -> Tensor:
        return c + (value - c).detach() if self.gradient_detach else value

    def positive(self, c: Tensor) -> Tensor:
        """P(c): the target similarity (before r and b)."""
        if self.variant == "C":
            v = self.adjust(c) - self.m
        elif self.variant == "A":
            cc = c.clamp(-1.0, 1.0)
            phi = cc * math.cos(self.m) - safe_sine(cc) * math.sin(self.m)
            v = self.adjust(torch.where(safe_angle(cc) + self.m < math.pi, phi, -1.0))
        else:
            v = self.adjust(torch.cos((self.m * safe_angle(c.clamp(-1.0, 1.0))).clamp(max=math.pi)))
        return self._st(c, v)

    def negative(self, c: Tensor) -> Tensor:
        """N(c): the similarity of the other classes (before r and b)."""
        v = self.adjust(c) + self.m if self.variant == "C" else self.adjust(c)
        return self._st(c, v)

    # ------------------------------------------------------------------ forward / loss
    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, C) binary logits, float32 (float64 for float64 inputs or weight)."""
        self.check_inputs(embeddings, labels)
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self._compute_dtype(embeddings))
            c = self.scores(x)
            b = self.bias.to(x.dtype)
            if labels is None:
                return self.r * self.adjust(c) + b
            labels = labels.long()
            logits = self.r * self.negative(c) + b
            pos = self.r * self.positive(c.gather(1, labels[:, None])) + b
            return logits.scatter(1, labels[:, None], pos)

    def loss_from_logits(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The SphereFace2 loss from the (B, C) logits of ``forward(x, y)``."""
        labels = labels.long()
        pos = logits.gather(1, labels[:, None]).squeeze(1)
        neg = softplus(logits).scatter(1, labels[:, None], 0.0).sum(dim=1)
        per_row = self.lamb * softplus(-pos) + (1.0 - self.lamb) * neg
        return self.loss_weight / self.r * per_row.mean()

    def loss(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        fused: bool = True,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
    ) -> Tensor:
        """Mean over the batch of the weighted softplus loss; never holds B x C if ``fused``."""
        self.check_loss_inputs(embeddings, labels)
        if not fused:
            return self.loss_from_logits(self(embeddings, labels), labels)
        labels = labels.long()
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self._compute_dtype(embeddings))
            b = self.bias.to(x.dtype)
            c_y = target_cosine(x, self._w(x.dtype), labels)
            pos = self.r * self.positive(c_y) + b
            neg_y = self.r * self.negative(c_y) + b

            def block(z: Tensor, c0: int, c1: int) -> Tensor:
                return softplus(self.r * self.negative(z) + b).sum(dim=1)

            xn = F.normalize(x, dim=1, eps=EPS)
            total = chunk_reduce(
                block, xn, self._w(x.dtype), chunk_size=chunk_size, memory_budget=memory_budget
            ).sum(dim=1)
            neg = total - softplus(neg_y)
            per_row = self.lamb * softplus(-pos) + (1.0 - self.lamb) * neg
            return self.loss_weight / self.r * per_row.mean()
