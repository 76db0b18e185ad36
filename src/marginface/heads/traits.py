"""The traits of a head class, checked once when the class is defined.

:class:`~marginface.heads.base.MarginHead` declares them as class attributes, with their
meaning, and calls :func:`check_traits` from ``__init_subclass__``: what a head is
(``loss_kind``, ``scale_policy``, ``state``, for Partial FC ``shardable`` and
``seeded_centres``, and for ``s = auto`` ``margin_from_class``) is read from these attributes
everywhere else, never from which methods a head replaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marginface.heads.base import MarginHead


LOSS_KINDS = ("margin_softmax", "binary", "own")
SCALE_POLICIES = ("auto", "fixed", "own", "feature_norm", "none")
STATES = ("none", "steps", "running_statistics")


def check_traits(cls: type[MarginHead], base: type[MarginHead]) -> None:
    """Check the traits head class ``cls`` declares (TypeError for a value outside their sets),
    and give it those that follow from what it defines: the one place that compares a head's
    methods with those of the base class ``base``."""
    for name, allowed in (
        ("loss_kind", LOSS_KINDS),
        ("scale_policy", SCALE_POLICIES),
        ("state", STATES),
    ):
        if getattr(cls, name) not in allowed:
            raise TypeError(
                f"{cls.__name__}.{name} must be one of {', '.join(allowed)}, "
                f"got {getattr(cls, name)!r}"
            )
    if cls.loss_kind == "margin_softmax" and cls.loss_over is not base.loss_over:
        cls.loss_kind = "own"
    if cls.state == "none" and cls.update_state is not base.update_state:
        cls.state = "steps"
    if cls.scale_policy in ("auto", "none"):
        cls.scale_policy = _scale_policy(cls, base)
    cls.shardable = cls.loss is base.loss
    cls.seeded_centres = cls.reset_parameters is base.reset_parameters
    # the class's margin is its margin_of where margin is the base's, or margin_of is defined
    # with margin or below it (a subclass replacing margin alone is not answered by the
    # margin_of it inherits)
    margin, formula = _defined_in(cls, "margin"), _defined_in(cls, "margin_of")
    cls.margin_from_class = margin is base or issubclass(formula, margin)


def _defined_in(cls: type, name: str) -> type:
    """The class of ``cls``'s method resolution order that defines ``name``."""
    return next(k for k in cls.__mro__ if name in vars(k))


def _scale_policy(cls: type[MarginHead], base: type[MarginHead]) -> str:
    """What ``"auto"`` or ``"none"`` becomes where it cannot hold: ``auto`` needs cosine
    logits (``normalize``) of the margin softmax's shape (``forward`` not replaced) and a fixed
    default ``s``; ``none`` is the plain softmax (``normalize`` false)."""
    if cls.forward is not base.forward:
        return "fixed"
    if not cls.normalize:
        return "none"
    if cls.scale_policy == "none":
        raise TypeError(f"{cls.__name__}: scale_policy 'none' is for heads with normalize False")
    return "auto" if cls.default_hparams().get("s") is not None else "own"
