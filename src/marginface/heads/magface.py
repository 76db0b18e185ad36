"""MagFace (Meng et al., CVPR 2021): a margin that grows with the feature magnitude, plus a
regulariser that rewards large magnitudes, so that the magnitude measures face quality.

Paper: "MagFace: A Universal Representation for Face Recognition and Quality Assessment";
reference code github.com/IrvingMeng/MagFace (``models/magface.py``, ``run/trainer.py``).
"""

from __future__ import annotations

from torch import Tensor

from marginface.heads.arcface import arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


def magface_lambda_bound(s: float, l_a: float, u_a: float, l_m: float, u_m: float) -> float:
    """The smallest lambda_g of MagFace's convergence theorem (checked in its trainer):
    ``s * k * u_a^2 * l_a^2 / (u_a^2 - l_a^2)`` with ``k = (u_m - l_m) / (u_a - l_a)``;
    about 22.59 for the defaults (s 64, 10..110, 0.45..0.8)."""
    k = (u_m - l_m) / (u_a - l_a)
    return s * k * u_a**2 * l_a**2 / (u_a**2 - l_a**2)


@register_head("magface")
class MagFace(MarginHead):
    """Target ``s * cos(theta_y + m(a))``, ``a = clamp(‖x‖, l_a, u_a)``,
    ``m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m``; other logits ``s * cos``.

    :meth:`loss` is MagFace's objective ``CE + lambda_g * mean_i g(a_i)`` with
    ``g(a) = a / u_a^2 + 1 / a``; ``forward`` gives the logits of the CE part.  The norm is
    not detached: the CE reaches it through m(a), the regulariser through g(a) (both zero
    outside [l_a, u_a], where the clamp is flat).

    With ``easy_margin`` (default True, as in the reference ``MagLinear``) the margin applies
    only where cos(theta_y) > 0; with False, ArcFace's fallback ``cos - m(a) sin m(a)``
    applies where theta_y + m(a) > pi.

    A lambda_g below :func:`magface_lambda_bound` (22.59 for the defaults) voids the paper's
    guarantee that the loss has a unique optimal magnitude; it is a ValueError here (the
    reference trainer's default, 20, is below it; its run scripts use 35).

    Args:
        s (64), l_a (10), u_a (110), l_m (0.45), u_m (0.8), lambda_g (35), easy_margin (True).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        easy_margin: bool = True,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not 0 < l_a < u_a:
            raise ValueError(f"need 0 < l_a < u_a, got l_a={l_a}, u_a={u_a}")
        if not l_m <= u_m:
            raise ValueError(f"need l_m <= u_m, got l_m={l_m}, u_m={u_m}")
        bound = magface_lambda_bound(self.s, l_a, u_a, l_m, u_m)
        if lambda_g < bound:
            k = (u_m - l_m) / (u_a - l_a)
            raise ValueError(
                f"lambda_g={lambda_g} is below MagFace's bound s*k*u_a^2*l_a^2/(u_a^2-l_a^2)"
                f" = {bound:.4f} (s={self.s}, k=(u_m-l_m)/(u_a-l_a)={k:.6g},"
                f" l_a={l_a}, u_a={u_a}); use lambda_g >= {bound:.4f}"
            )
        self.l_a, self.u_a, self.l_m, self.u_m = float(l_a), float(u_a), float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)
        self.easy_margin = bool(easy_margin)

    def magnitude(self, norms: Tensor) -> Tensor:
        """a = clamp(‖x‖, l_a, u_a), (B,)."""
        return norms.clamp(self.l_a, self.u_a)

    def adaptive_margin(self, norms: Tensor) -> Tensor:
        """m(a), (B,)."""
        return self.margin_at(norms, l_a=self.l_a, u_a=self.u_a, l_m=self.l_m, u_m=self.u_m)

    @staticmethod
    def margin_at(norms: Tensor, *, l_a: float, u_a: float, l_m: float, u_m: float) -> Tensor:
        """m(a) for the norms (B,) and the bounds given, (B,)."""
        a = norms.clamp(l_a, u_a)
        return (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m

    def regularizer(self, norms: Tensor) -> Tensor:
        """g(a) = a / u_a^2 + 1 / a, (B,)."""
        a = self.magnitude(norms)
        return a / self.u_a**2 + 1.0 / a

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(
            cos_y,
            norms,
            l_a=self.l_a,
            u_a=self.u_a,
            l_m=self.l_m,
            u_m=self.u_m,
            easy_margin=self.easy_margin,
        )

    @classmethod
    def margin_of(
        cls,
        cos_y: Tensor,
        norms: Tensor,
        *,
        l_a: float,
        u_a: float,
        l_m: float,
        u_m: float,
        easy_margin: bool,
        **params: object,
    ) -> Tensor:
        m = cls.margin_at(norms, l_a=l_a, u_a=u_a, l_m=l_m, u_m=u_m)
        return arc_margin(cos_y, m, easy_margin)

    def extra_loss(self, x: Tensor) -> Tensor:
        """``lambda_g * mean(g(a))``, added to the cross-entropy by :meth:`loss`."""
        return self.lambda_g * self.regularizer(x.norm(dim=1)).mean()
