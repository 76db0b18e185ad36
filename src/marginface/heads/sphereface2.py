"""SphereFace2 (Wen, Liu et al., ICLR 2022): one-vs-all binary classification on the hypersphere.

Paper: "SphereFace2: Binary Classification is All You Need for Deep Face Recognition";
reference code github.com/ydwen/opensphere (``model/head/sphereface2{a,c,m}.py`` of the
ICLR branch, ``opensphere/module/head/sphereface2.py`` now).

Instead of a softmax over classes, every class is its own binary classifier with logit
``s * sim + b`` (a shared learnable bias b; the paper calls the scale r) and the loss is a
weighted sum of softplus terms (:class:`marginface.heads.binary.BinaryHead`)::

    L_i = (lw / s) * [ lambda * softplus(-(s * P(c_iy) + b))
                       + (1 - lambda) * sum_{j != y} softplus(s * N(c_ij) + b) ]

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
not its gradient, which is that of ``s * c`` (SphereFace-R's characteristic gradient
detachment); with False the gradient goes through g and the margin (the ICLR branch's C).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads._math import cos_plus, safe_angle
from marginface.heads.binary import BinaryHead
from marginface.heads.registry import register_head

_DEFAULT_M = {"C": 0.4, "A": 0.5, "M": 1.7}
_DEFAULT_S = 40.0


@register_head("sphereface2")
class SphereFace2(BinaryHead):
    """SphereFace2's binary classifiers: logits ``s * P(c_y) + b`` (target), ``s * N(c_j) + b``.

    ``forward(x, y)`` gives these (B, C) sigmoid logits; ``forward(x)`` gives
    ``s * g(c) + b``; :meth:`loss` is the weighted softplus loss above, mean over the batch,
    computed in blocks of classes (never the whole B x C) unless ``fused=False``.

    Args:
        s: scale (40; the paper's r).  m: margin (None: the variant's default, C 0.4, A 0.5,
        M 1.7).  lamb: weight lambda of the positive term (0.7).  t: exponent of g (3).
        variant: "C", "A" or "M".  loss_weight: lw (50).
        gradient_detach: value of g and margin, gradient of s*c (True).
        r: the scale's old name, kept as an alias (a ValueError when given with another s).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = _DEFAULT_S,
        m: float | None = None,
        lamb: float = 0.7,
        t: float = 3.0,
        variant: str = "C",
        loss_weight: float = 50.0,
        gradient_detach: bool = True,
        r: float | None = None,
    ) -> None:
        if r is not None:
            if s != _DEFAULT_S and s != r:
                raise ValueError(
                    f"give the scale as s or as its old name r, not both: s={s}, r={r}"
                )
            s = r
        variant = str(variant).upper()
        if variant not in _DEFAULT_M:
            raise ValueError(f"variant must be 'C', 'A' or 'M', got {variant!r}")
        if not 0.0 < lamb < 1.0:
            raise ValueError(f"lamb must lie in (0, 1), got {lamb}")
        if not t > 0:
            raise ValueError(f"t must be positive, got {t}")
        super().__init__(embedding_size, num_classes, s=s)
        self.variant = variant
        self.m = float(_DEFAULT_M[variant] if m is None else m)
        if variant == "M" and not self.m > 0:
            raise ValueError(f"variant M needs m > 0, got {self.m}")
        self.lamb, self.t = float(lamb), float(t)
        self.loss_weight, self.gradient_detach = float(loss_weight), bool(gradient_detach)
        self.init_shared(num_classes)

    # ------------------------------------------------------------------ the formulas
    def initial_bias(self, num_classes: int | None = None) -> float:
        """The paper's initial b for this head's s, m, lambda, t, variant and ``num_classes``
        (default: this head's C; C - 1 is taken as 1 for a single class, where the paper's
        formula is undefined)."""
        classes = self.num_classes if num_classes is None else num_classes
        r, m, lam = self.s, self.m, self.lamb
        z = lam / ((1.0 - lam) * max(classes - 1.0, 1.0))
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
        """P(c): the target similarity (before s and b)."""
        if self.variant == "C":
            v = self.adjust(c) - self.m
        elif self.variant == "A":
            cc = c.clamp(-1.0, 1.0)
            theta_m = torch.where(safe_angle(cc) + self.m < math.pi, cos_plus(cc, self.m), -1.0)
            v = self.adjust(theta_m)
        else:
            v = self.adjust(torch.cos((self.m * safe_angle(c.clamp(-1.0, 1.0))).clamp(max=math.pi)))
        return self._st(c, v)

    def negative(self, c: Tensor) -> Tensor:
        """N(c): the similarity of the other classes (before s and b)."""
        v = self.adjust(c) + self.m if self.variant == "C" else self.adjust(c)
        return self._st(c, v)

    # --------------------------------------------------------- BinaryHead's pieces
    @property
    def positive_weight(self) -> float:  # type: ignore[override]
        return self.lamb

    @property
    def negative_weight(self) -> float:  # type: ignore[override]
        return 1.0 - self.lamb

    @property
    def loss_scale(self) -> float:  # type: ignore[override]
        return self.loss_weight / self.s

    def positive_logit(self, cos_y: Tensor) -> Tensor:
        return self.s * self.positive(cos_y) + self.bias.to(cos_y.dtype)

    def negative_logit(self, cos: Tensor) -> Tensor:
        return self.s * self.negative(cos) + self.bias.to(cos.dtype)

    def logit(self, cos: Tensor) -> Tensor:
        return self.s * self.adjust(cos) + self.bias.to(cos.dtype)
