"""Name -> head class registry behind :func:`create_head` and :func:`list_heads`.

A head class registers itself with the decorator :func:`register_head`; its hyperparameters
and their defaults are those of its constructor (:meth:`MarginHead.default_hparams`).  A
variant of a head, the same class with some constructor arguments fixed and other defaults
(ElasticFace's four), is registered as data with :func:`register_variant`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from marginface.text import cut, short_repr

if TYPE_CHECKING:
    from marginface.heads.base import MarginHead

_HEADS: dict[str, type[MarginHead]] = {}


def register_head(name: str) -> Callable[[type[MarginHead]], type[MarginHead]]:
    """Class decorator: make a head available to :func:`create_head` under ``name``."""

    def decorate(cls: type[MarginHead]) -> type[MarginHead]:
        if name in _HEADS and _HEADS[name] is not cls:
            raise ValueError(f"head name {name!r} is already registered by {_HEADS[name]!r}")
        _HEADS[name] = cls
        cls.head_name = name
        return cls

    return decorate


def register_variant(
    name: str,
    base: type[MarginHead],
    class_name: str,
    *,
    fixed: Mapping[str, object],
    doc: str,
    **defaults: object,
) -> type[MarginHead]:
    """Register ``base`` under ``name`` with the constructor arguments ``fixed`` (which are then
    not hyperparameters of ``name``) and ``defaults`` in place of the constructor's.

    Returns the subclass of ``base`` that these data make (``class_name``, docstring ``doc``):
    its constructor is ``base``'s with ``fixed`` applied and the new defaults, and its
    :meth:`~MarginHead.default_hparams` say so, so that it is rebuilt like any other head.
    """
    params = inspect.signature(base.__init__).parameters
    unknown = sorted((set(fixed) | set(defaults)) - set(params))
    if unknown:
        raise ValueError(f"{base.__name__} takes no argument(s) {', '.join(unknown)}")
    signature = inspect.signature(base.__init__)
    signature = signature.replace(
        parameters=[
            p.replace(default=defaults.get(k, p.default))
            for k, p in params.items()
            if k not in fixed
        ]
    )
    own = {k: p.default for k, p in signature.parameters.items() if p.default is not p.empty}

    def __init__(self, embedding_size: int, num_classes: int, **hparams: object) -> None:
        extra = sorted(set(hparams) - set(own))
        if extra:
            raise TypeError(f"{class_name}() got unexpected keyword argument(s) {extra}")
        base.__init__(self, embedding_size, num_classes, **{**own, **hparams, **fixed})

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    namespace = {
        "__init__": __init__,
        "__doc__": doc,
        "__module__": base.__module__,
        "fixed_hparams": dict(fixed),
    }
    cls = type(class_name, (base,), namespace)
    return register_head(name)(cls)


def list_heads() -> list[str]:
    """Names accepted by :func:`create_head`, sorted."""
    return sorted(_HEADS)


def head_class(name: str) -> type[MarginHead]:
    if name not in _HEADS:
        raise ValueError(f"unknown head {short_repr(name)}; valid heads: {', '.join(list_heads())}")
    return _HEADS[name]


def head_hparams(name: str) -> dict[str, object]:
    """The hyperparameters of head ``name`` with their defaults (beyond the two sizes)."""
    return head_class(name).default_hparams()


def create_head(name: str, embedding_size: int, num_classes: int, **hparams: object) -> MarginHead:
    """Build the head registered as ``name``.

    Args:
        name: one of :func:`list_heads`, e.g. ``"arcface"``.
        embedding_size: width D of the embeddings the head receives.
        num_classes: number of identities C.
        **hparams: the head's hyperparameters (``s``, ``m``, ...); unknown names are a
            ValueError that lists the valid ones.
    """
    check_hparams(name, hparams)
    return head_class(name)(embedding_size, num_classes, **hparams)


def check_hparams(name: str, hparams: Mapping[str, object]) -> None:
    """ValueError for an unknown head, an unknown hyperparameter of it (listing the valid
    ones) or a value not of its default's kind; ranges are the head's constructor's to check."""
    valid = head_class(name).default_hparams()
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(cut(str(k), 100) for k in unknown[:5])} "
            f"for head {short_repr(name)}; "
            f"valid: {', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}"
        )
    for key, value in hparams.items():
        _check_hparam(name, key, value, valid[key])


def _check_hparam(head: str, key: str, value: object, default: object) -> None:
    """ValueError naming the head and the key when ``value`` is not of its default's kind:
    a finite number for a number (any finite number where the default is None), a bool for a
    bool, a string for a string. Ranges are the head's own to check."""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, int | float) or default is None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        try:  # an int beyond float range (m=10**400) is not a usable hyperparameter either
            finite = number and math.isfinite(float(value))
        except OverflowError:
            finite = False
        if isinstance(default, int) and not isinstance(default, bool):
            finite = finite and float(value).is_integer()
        ok = finite or (default is None and value is None)
        kind = "a finite number" if not isinstance(default, int) else "a whole number"
    else:
        return
    if not ok:
        raise ValueError(
            f"head {head!r} hyperparameter {key}: must be {kind}, got {short_repr(value)}"
        )
