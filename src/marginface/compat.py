"""Drop-in replacements for the three heads of the classic arcface-pytorch code
(``models/metrics.py`` of github.com/ronghuaiyang/arcface-pytorch, the PyTorch ArcFace
implementation many face projects started from): ``SphereProduct``, ``AddMarginProduct``,
``ArcMarginProduct``, with its constructor signatures and ``weight`` of shape
(out_features, in_features).

They give that file's logits where it is right and fix it where it is wrong:

- they run on any device (metrics.py hard-codes ``device='cuda'`` for its one-hot);
- no dense one-hot: the target column is indexed;
- ArcFace stays finite (values and gradients) when an embedding lies on its class centre,
  where metrics.py's ``sqrt(1 - cos^2)`` gives NaN for |cos| rounded past 1;
- SphereFace's iteration counter is a buffer (in ``state_dict``) that advances only in
  training mode, where metrics.py's plain attribute also advanced during evaluation.
"""

from __future__ import annotations

from marginface.heads.arcface import ArcFace
from marginface.heads.cosface import CosFace
from marginface.heads.sphereface import SphereFace


class _ClassicSignature:
    in_features: int
    out_features: int

    def _classic_sizes(self, in_features: int, out_features: int) -> None:
        self.in_features = in_features
        self.out_features = out_features


class SphereProduct(SphereFace, _ClassicSignature):
    """metrics.py's SphereFace: ``SphereProduct(in_features, out_features, m=4)``."""

    def __init__(self, in_features: int, out_features: int, m: int = 4) -> None:
        super().__init__(in_features, out_features, m=m)
        self._classic_sizes(in_features, out_features)


class AddMarginProduct(CosFace, _ClassicSignature):
    """metrics.py's CosFace: ``AddMarginProduct(in_features, out_features, s=30.0, m=0.40)``."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0, m: float = 0.40):
        super().__init__(in_features, out_features, s=s, m=m)
        self._classic_sizes(in_features, out_features)


class ArcMarginProduct(ArcFace, _ClassicSignature):
    """metrics.py's ArcFace: ``ArcMarginProduct(in_features, out_features, s=30.0, m=0.50,
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
        self._classic_sizes(in_features, out_features)


__all__ = ["AddMarginProduct", "ArcMarginProduct", "SphereProduct"]
