"""Drop-in replacements for the seed's three heads (``SphereProduct``, ``AddMarginProduct``,
``ArcMarginProduct``), with the seed's constructor signatures and ``weight`` of shape
(out_features, in_features).

They give the seed's logits where the seed is right and fix it where it is wrong:

- they run on any device (the seed hard-codes ``device='cuda'`` for its one-hot);
- no dense one-hot: the target column is indexed;
- ArcFace stays finite (values and gradients) when an embedding lies on its class centre,
  where the seed's ``sqrt(1 - cos^2)`` gives NaN for |cos| rounded past 1;
- SphereFace's iteration counter is a buffer (in ``state_dict``) that advances only in
  training mode, where the seed's plain attribute also advanced during evaluation.
"""

from __future__ import annotations

from marginface.heads.arcface import ArcFace
from marginface.heads.cosface import CosFace
from marginface.heads.sphereface import SphereFace


class _SeedSignature:
    in_features: int
    out_features: int

    def _seed_sizes(self, in_features: int, out_features: int) -> None:
        self.in_features = in_features
        self.out_features = out_features


class SphereProduct(SphereFace, _SeedSignature):
    """The seed's SphereFace: ``SphereProduct(in_features, out_features, m=4)``."""

    def __init__(self, in_features: int, out_features: int, m: int = 4) -> None:
        super().__init__(in_features, out_features, m=m)
        self._seed_sizes(in_features, out_features)


class AddMarginProduct(CosFace, _SeedSignature):
    """The seed's CosFace: ``AddMarginProduct(in_features, out_features, s=30.0, m=0.40)``."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.40):
        super().__init__(in_features, out_features, s=s, m=m)
        self._seed_sizes(in_features, out_features)


class ArcMarginProduct(ArcFace, _SeedSignature):
    """The seed's ArcFace: ``ArcMarginProduct(in_features, out_features, s=30.0, m=0.50,
    easy_margin=False)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        s: float = 30.0,
        m: float = 0.50,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, s=s, m=m, easy_margin=easy_margin)
        self._seed_sizes(in_features, out_features)


__all__ = ["AddMarginProduct", "ArcMarginProduct", "SphereProduct"]
