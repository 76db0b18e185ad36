"""The scale policy of the heads: the scale s that fits the number of classes, how a run's s is
set (:func:`resolve_scale`), and the loss of a model that tells no class apart.

A head class declares its :attr:`~marginface.heads.MarginHead.scale_policy`; ``s = auto`` (the
default of ``marginface train``) applies to the heads whose policy is ``"auto"``: cosine logits
s * cos of the margin softmax with a fixed default s.

The margin's psi(1) comes from the head class: each head writes its margin once, as the class
method :meth:`~marginface.heads.MarginHead.margin_of` of the cosines, the norms, the
hyperparameters and the state, which its :meth:`~marginface.heads.MarginHead.margin` calls with
its own. :func:`resolve_scale` (a run's s, before any head is built) calls it with the
hyperparameters given, the defaults for the others and the state a new head starts from
(:meth:`~marginface.heads.MarginHead.fresh_params`): :func:`class_target`. :func:`target_curve`,
:func:`auto_scale` and :func:`chance_loss` read an existing head, in its current state (the
running statistics it has gathered).

A cosine head's logits are s * cos, so s bounds how sure the softmax can be: with the target at
cos = 1 (after the margin: psi(1)) and the C - 1 other centres orthogonal to the feature
(cos = 0), the target's probability is

    P = exp(s psi(1)) / (exp(s psi(1)) + C - 1),

and P >= P* needs

    s >= (log(C - 1) + log(P* / (1 - P*))) / psi(1).                       (scale rule)

This is the lower bound of CosFace (Wang et al., CVPR 2018, section 3.4:
s >= (C-1)/C log((C-1) P / (1 - P)), derived without the margin) with the margin's psi(1) in the
denominator. :func:`auto_scale` returns that smallest scale for P* = 0.99: large enough for a
confident softmax, and no larger, because a scale far above it (the papers' s = 64 on a few hundred
classes) makes the loss of the margin term dominate from the first step and training stalls at the
:func:`chance_loss` plateau, and a scale well above the bound learns more slowly (measured in
docs/training.md: ArcFace on 100 identities learns alike at s = 6.5 ... 10, slower at 14.4, not at
all at 32 and 64). For ArcFace (psi(1) = cos 0.5) that is s = 10.5 for 100 classes, 11.7 for
299, 13.1 for 1,000, 18.4 for 100,000.

:func:`chance_loss` is the loss of a model whose features are equally near every centre (every
cosine c): ``log(1 + (C - 1) exp(s (c - psi(c))))``, at its smallest over c in [-1, 1]. A run whose
loss has not fallen clearly below it has learnt nothing that separates the classes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from marginface.heads.base import MarginHead
from marginface.heads.registry import check_hparams, head_class

#: the target probability of the scale rule
TARGET_PROBABILITY = 0.99
#: the feature norm at which norm-dependent margins (MagFace, AdaFace) are evaluated here
NOMINAL_NORM = 20.0
#: the rule as printed in logs and saved in run configs
SCALE_RULE = (
    "s = (log(C - 1) + log(P / (1 - P))) / psi(1), P = 0.99: the smallest scale at which a "
    "sample on its centre, all other centres orthogonal, has probability P (CosFace's bound, "
    "Wang et al. 2018, with the margin's target psi(1))"
)


def uses_scale(head: type[MarginHead] | MarginHead) -> bool:
    """True for heads whose :attr:`~MarginHead.scale_policy` is ``"auto"``: logits s * (cosine
    logits) of a softmax over the classes, with a fixed default s, the heads :func:`auto_scale`
    applies to (not plain softmax, SphereFace's feature-norm scale, the per-class binary heads
    SphereFace2 and UniFace, SphereFace-R, nor AdaCos, which sets its own scale)."""
    return head.scale_policy == "auto"


def _small(cls: type[MarginHead], hparams: dict[str, Any]) -> MarginHead:
    """A head of ``cls`` with 3 classes of width 1, built without drawing from the global RNG."""
    with torch.random.fork_rng(devices=[]):
        return cls(1, 3, **hparams)


def _ready(probe: MarginHead) -> MarginHead:
    """``probe`` as the curves read it: the whole margin, eval mode, float64."""
    probe.margin_weight = 1.0
    return probe.eval().double()


def _probe(head: MarginHead) -> MarginHead:
    """A small copy of ``head`` (same class, hyperparameters and state buffers such as
    SphereFace's iteration, with 3 classes of width 1), ready for the curves."""
    try:
        probe = _small(type(head), head.hparams())
    except (TypeError, ValueError):  # hyperparameters it does not store: copy it whole
        probe = copy.deepcopy(head)
    mine = dict(probe.named_buffers())
    with torch.no_grad():
        for name, value in head.named_buffers():  # the state, not the per-class rows
            if name in mine and mine[name].shape == value.shape:
                mine[name].copy_(value)
    return _ready(probe)


@torch.no_grad()
def _target(probe: MarginHead, cos: torch.Tensor) -> torch.Tensor:
    c = cos.detach().to(torch.float64).reshape(-1)
    return probe.margin(c, torch.full_like(c, NOMINAL_NORM)).reshape(cos.shape)


@torch.no_grad()
def class_target(cls: type[MarginHead], hparams: dict[str, Any], cos: torch.Tensor) -> torch.Tensor:
    """psi(cos) of a new head of ``cls`` with hyperparameters ``hparams`` (the others at their
    defaults; eval mode, norms NOMINAL_NORM, the initial state), float64, shape of ``cos``:
    from the class's :meth:`~MarginHead.margin_of`, building no head (where the class's
    margin is not read from the class, :attr:`~MarginHead.margin_from_class` false: from a
    small head of it)."""
    if not cls.margin_from_class:
        return _target(_ready(_small(cls, hparams)), cos)
    c = cos.detach().to(torch.float64).reshape(-1)
    psi = cls.margin_of(c, torch.full_like(c, NOMINAL_NORM), **cls.fresh_params(hparams))
    return psi.reshape(cos.shape)


def target_curve(head: MarginHead, cos: torch.Tensor) -> torch.Tensor:
    """psi(cos): the head's target cosine after the margin (eval mode, norms NOMINAL_NORM,
    the head's current state), float64, shape of ``cos``; the head is not changed."""
    return _target(_probe(head), cos)


def auto_scale(head: MarginHead, num_classes: int, p: float = TARGET_PROBABILITY) -> float:
    """The scale rule of the module doc for ``head``'s margin and ``num_classes`` classes.

    >>> from marginface.heads import create_head
    >>> round(auto_scale(create_head("arcface", 8, 2), 299), 2)  # psi(1) = cos(0.5)
    11.73
    """
    _check_rule(num_classes, p)
    return _scale_rule(head.head_name, float(target_curve(head, torch.ones(1))), num_classes, p)


def _check_rule(num_classes: int, p: float) -> None:
    if num_classes < 2:
        raise ValueError(f"auto_scale needs at least 2 classes, got {num_classes}")
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")


def _scale_rule(name: str, psi1: float, num_classes: int, p: float) -> float:
    """The scale rule for the target ``psi1`` at cos = 1 (the arguments checked)."""
    if not psi1 > 0:
        raise ValueError(
            f"{name}: its target at cos = 1 is {psi1:.3f} <= 0: no scale makes a "
            f"sample on its centre likely; choose s explicitly"
        )
    return (math.log(num_classes - 1) + math.log(p / (1.0 - p))) / psi1


def chance_loss(head: MarginHead, num_classes: int, points: int = 2001) -> float:
    """The loss of a model that tells no class apart (module doc); log C for the plain softmax.

    >>> from marginface.heads import create_head
    >>> round(chance_loss(create_head("cosface", 8, 2, s=64.0), 299), 2)  # log(1 + 298 e^22.4)
    28.1
    """
    if not head.normalize:
        return math.log(num_classes)
    c = torch.linspace(-1.0, 1.0, points, dtype=torch.float64)
    gap = float((c - target_curve(head, c)).min())
    a, b = 0.0, math.log(num_classes - 1) + float(head.s) * gap  # log(e^a + e^b), stably
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


@dataclass
class ScaleChoice:
    """How a run's scale was set: ``value``, ``rule`` (None when given explicitly)."""

    head: str
    num_classes: int
    value: float | None
    rule: str | None

    def describe(self) -> str:
        if self.value is None:
            return f"head {self.head}: sets its own scale (s=auto applies to the cosine heads)"
        if self.rule is None:
            return f"head {self.head}: s={self.value:g} (given)"
        return (
            f"head {self.head}: s=auto -> {self.value:.2f} for {self.num_classes} classes "
            f"({self.rule})"
        )


def resolve_scale(
    head: str, embedding_size: int, num_classes: int, head_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], ScaleChoice]:
    """``head_kwargs`` with ``s`` set: a missing or ``"auto"`` s of a head whose
    :attr:`~MarginHead.scale_policy` is ``"auto"`` becomes the scale rule's value for the
    psi(1) of :func:`class_target` (the head's other hyperparameters, its initial state),
    rounded to 4 decimals. The other hyperparameters are checked as
    :func:`~marginface.heads.create_head` checks their kinds; their ranges are checked when
    the head is built."""
    kwargs = dict(head_kwargs)
    s = kwargs.get("s", "auto")
    others = {k: v for k, v in kwargs.items() if k != "s"}
    check_hparams(head, others)
    cls = head_class(head)
    if cls.scale_policy != "auto":
        if s == "auto" and "s" in kwargs:
            raise ValueError(
                f"head_kwargs s: 'auto' applies to the cosine softmax heads; head {head!r} "
                f"sets its scale otherwise (give a number)"
            )
        return kwargs, ScaleChoice(head, num_classes, None, None)
    if s == "auto":
        _check_rule(num_classes, TARGET_PROBABILITY)
        psi1 = float(class_target(cls, others, torch.ones(1)))
        value = _scale_rule(head, psi1, num_classes, TARGET_PROBABILITY)
        kwargs["s"] = round(value, 4)
        return kwargs, ScaleChoice(head, num_classes, kwargs["s"], SCALE_RULE)
    number = isinstance(s, int | float) and not isinstance(s, bool)
    # anything else is create_head's to refuse, naming the head and the key
    return kwargs, ScaleChoice(head, num_classes, float(s) if number else None, None)
