"""Public names of a package imported on first use (PEP 562), so that importing the package
imports none of their modules: ``import marginface`` does not import torch.

In the package's ``__init__``::

    __getattr__, __dir__ = lazy_names(__name__, {"create_head": "marginface.heads"}, globals())

This module imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` whose public names ``names``
    (name -> the module that defines it) are imported on first use: a name's module is
    imported when the name is first read, and the value kept in ``namespace`` (the package's
    ``globals()``), so later reads do not come here. Any other name is an AttributeError."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return __getattr__, __dir__
