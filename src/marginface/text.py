"""Values echoed in messages, bounded.

An error or warning names the value it refuses; a hostile value (a 35 MB YAML expansion, a
401-digit number, a file name of arbitrary bytes) must not become a 35 MB line or an encoding
error while it is printed. :func:`short_repr` is the one way messages echo a value: its repr,
cut to ``limit`` characters with the count of what was left out, and printable whatever bytes
it came from (surrogate-escaped file-name bytes appear as ``\\udcXX`` escapes, as repr shows
them). :func:`printable` does the same for text that is not a repr (a file name in a message).
"""

from __future__ import annotations

import os
import reprlib
from typing import Any

#: the most characters of one echoed value
LIMIT = 200

_REPR = reprlib.Repr()
_REPR.maxlevel = 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = LIMIT
for _name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_REPR, _name, 8)


def cut(text: str, limit: int = LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text) - limit + 40:,} more characters)"


def short_repr(value: Any, limit: int = LIMIT) -> str:
    """The repr of ``value``, bounded: nesting beyond four levels shows as ``...``, long
    containers and strings are abbreviated, and the whole is cut to ``limit`` characters.
    Safe on any value (a deep or self-referencing structure, a huge int)."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        return f"<an integer of about {value.bit_length() * 0.30103:.0f} digits>"
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails still gets echoed as something
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def printable(text: str | os.PathLike, limit: int = 1000) -> str:
    """``text`` (a path, a file name) as it can be printed on any terminal: characters that are
    not printable (control characters, surrogate-escaped bytes of a non-UTF-8 name) shown as
    repr escapes, cut to ``limit`` characters."""
    text = os.fspath(text)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return cut(text, limit)
