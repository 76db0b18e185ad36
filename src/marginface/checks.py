"""Argument checks that every layer shares: whole numbers, where a bool (an int to Python) is
not one."""

from __future__ import annotations


def is_int_at_least(value: object, minimum: int) -> bool:
    """True for an int, not a bool, of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_int(value: object, name: str, minimum: int) -> int:
    """``value``, or a ValueError ``"{name} must be an int >= {minimum}, got {value!r}"``."""
    if not is_int_at_least(value, minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value  # type: ignore[return-value]


def check_positive_int(value: object, name: str) -> int:
    """``value``, or a ValueError ``"{name} must be a positive int, got {value!r}"``."""
    if not is_int_at_least(value, 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value  # type: ignore[return-value]
