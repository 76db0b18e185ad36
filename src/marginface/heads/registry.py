"""Name -> head class registry behind :func:`create_head` and :func:`list_heads`."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

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


def list_heads() -> list[str]:
    """Names accepted by :func:`create_head`, sorted."""
    return sorted(_HEADS)


def head_class(name: str) -> type[MarginHead]:
    if name not in _HEADS:
        raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(list_heads())}")
    return _HEADS[name]


def head_hparams(name: str) -> dict[str, object]:
    """The hyperparameters of head ``name`` with their defaults (beyond the two sizes)."""
    params = inspect.signature(head_class(name).__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("self", "embedding_size", "num_classes")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def create_head(name: str, embedding_size: int, num_classes: int, **hparams: object) -> MarginHead:
    """Build the head registered as ``name``.

    Args:
        name: one of :func:`list_heads`, e.g. ``"arcface"``.
        embedding_size: width D of the embeddings the head receives.
        num_classes: number of identities C.
        **hparams: the head's hyperparameters (``s``, ``m``, ...); unknown names are a
            ValueError that lists the valid ones.
    """
    cls = head_class(name)
    valid = head_hparams(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for head {name!r}; "
            f"valid: {', '.join(f'{k}={v!r}' for k, v in valid.items()) or '(none)'}"
        )
    for key, value in hparams.items():
        _check_hparam(name, key, value, valid[key])
    return cls(embedding_size, num_classes, **hparams)


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
        if isinstance(default, int) and not isinstance(default, bool):
            number = number and float(value).is_integer()
        ok = (number and math.isfinite(value)) or (default is None and value is None)
        kind = "a finite number" if not isinstance(default, int) else "a whole number"
    else:
        return
    if not ok:
        raise ValueError(f"head {head!r} hyperparameter {key}: must be {kind}, got {value!r}")
