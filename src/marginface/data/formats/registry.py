"""A registry of spec formats: what :mod:`marginface.data.formats.datasets` (datasets) and
:mod:`marginface.data.formats.pairs` (pair sets) each hold one of.

A format is a name, a test of the spec (``matches(spec) -> bool``), an opener and the form of
its specs (``spec_help``, for error messages). The registry asks its formats latest-registered
first, so a format a project adds is tried before the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Format:
    """A registered format: ``name``, ``matches(spec)``, ``open`` (the opener) and
    ``spec_help`` (how its specs look)."""

    name: str
    matches: Callable[[str], bool]
    open: Callable[..., Any]
    spec_help: str


class FormatRegistry:
    """Formats of one kind (``kind``, e.g. "dataset format"), by name in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.formats: dict[str, Format] = {}

    def register(
        self, name: str, matches: Callable[[str], bool], spec_help: str = ""
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: the opener opens the specs for which ``matches(spec)`` is true.
        ValueError for a name already registered with another opener."""

        def decorate(opener: Callable[..., Any]) -> Callable[..., Any]:
            if name in self.formats and self.formats[name].open is not opener:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self.formats[name] = Format(name, matches, opener, spec_help or name)
            return opener

        return decorate

    def names(self) -> list[str]:
        """The registered names, latest first (the order :meth:`find` tries)."""
        return list(reversed(self.formats))

    def find(self, spec: str) -> Format | None:
        """The format that opens ``spec`` (the latest registered that matches), or None."""
        for fmt in reversed(list(self.formats.values())):
            if fmt.matches(spec):
                return fmt
        return None

    def spec_help(self) -> str:
        """Every registered format's spec form, latest first."""
        return ", ".join(f.spec_help for f in reversed(list(self.formats.values())))
