"""YAML settings read from the user (``--config``, ``--head-kwargs``, ``--head-X``), safely;
and JSON data files (:func:`load_json`) with their nesting bounded the same way.

Settings are small, flat-ish mappings of names to numbers, strings and short lists. The YAML
that carries them is read with PyYAML's safe loader and three more limits, so that a hostile
value stays a one-line error:

- aliases (``*name``) are refused: nested aliases expand exponentially (a 314-byte document
  becomes a structure whose repr is 35.8 MB);
- nesting is bounded (:data:`MAX_DEPTH` levels): a 3,000-deep ``[[[...]]]`` is refused before
  the loader recurses into it;
- every mapping key is a string (``{1: 2}`` is refused: setting names are words).

Errors are :class:`ValueError` naming ``source`` (the file or flag), one line, with the YAML
problem's position but never the whole value.
"""

from __future__ import annotations

from typing import Any

import yaml

from marginface.text import cut, short_repr

#: the deepest nesting of lists and mappings accepted in a settings value
MAX_DEPTH = 20


class _Refused(yaml.YAMLError):
    """A YAML document outside what settings may hold."""


class SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, with bounded nesting and string keys only."""

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"YAML aliases (*name) are not accepted in settings ({_at(event)})")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels ({_at(self.peek_event())})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        for key, _ in node.value:
            if not (isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str"):
                shown = short_repr(key.value) if isinstance(key, yaml.ScalarNode) else key.id
                raise _Refused(f"keys must be names (strings), got {shown} ({_at(key)})")
        return super().construct_mapping(node, deep=deep)


def _at(mark_holder: Any) -> str:
    mark = getattr(mark_holder, "start_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "here"


def load_settings(text: str, source: str, text_if_invalid: bool = False) -> Any:
    """The value of YAML (or JSON) ``text`` under the limits above; ValueError naming
    ``source`` (when not empty) otherwise. ``text_if_invalid``: ``text`` itself where it is
    not YAML at all, as for a single command-line value (the limits above still apply)."""
    where = f"{source}: " if source else ""
    try:
        return yaml.load(text, Loader=SettingsLoader)  # noqa: S506 - SettingsLoader is safe
    except _Refused as exc:
        raise ValueError(f"{where}{exc}") from None
    except yaml.YAMLError as exc:
        if text_if_invalid:
            return text
        problem = " ".join(str(exc).split())
        raise ValueError(f"{where}not valid YAML or JSON ({cut(problem, 300)})") from None
    except RecursionError:  # a limit above was not enough for some construct
        raise ValueError(f"{where}nested too deeply") from None


def load_json(text: str, source: str) -> Any:
    """The value of JSON ``text`` (a ``model.json``); ValueError naming ``source`` when it is
    not JSON or is nested deeper than the interpreter can parse (instead of a
    RecursionError)."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{source}: not valid JSON (nested too deeply)") from None
