"""``marginface train --help``: the defaults of every option and the ``--head-X V`` options
described, grouped by head.

The defaults come from :class:`marginface.training.TrainConfig` (the one place they are set),
the heads, their hyperparameters and defaults from the heads registry, and the descriptions
from the heads' docstrings (the module's first sentence for the head, the ``Args:`` entry
for each hyperparameter), so the help cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import textwrap
from typing import Any

#: what a default of None / an empty list means, per config key
_NONE = {"grad_clip": "off", "max_steps": "all epochs", "data": "required", "val": "none"}


def config_default(dest: str) -> str | None:
    """The default of config key ``dest`` as said in ``--help`` (None: not a config key)."""
    from marginface.training.config import (
        DEFAULT_LR,
        FINETUNE_EPOCHS,
        FINETUNE_OPTIMIZER,
        SCRATCH_EPOCHS,
        SCRATCH_MODEL,
        SCRATCH_OPTIMIZER,
        TrainConfig,
    )

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if dest not in fields:
        return None
    f = fields[dest]
    value: Any = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value is None and dest in SCRATCH_MODEL:  # left out: from scratch, or the --init model's
        return f"{SCRATCH_MODEL[dest]}; with --init, the model's"
    if value is None and dest == "epochs":
        return f"{SCRATCH_EPOCHS}; {FINETUNE_EPOCHS} with --init"
    if value is None and dest == "optimizer":
        return f"{SCRATCH_OPTIMIZER}; {FINETUNE_OPTIMIZER} with --init"
    if value is None and dest == "lr":
        return ", ".join(f"{lr:g} with {name}" for name, lr in DEFAULT_LR.items())
    if value is None or value == [] or value == {}:
        return _NONE.get(dest, "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def with_default(help_text: str, dest: str) -> str:
    """``help_text`` with `` (default: X)`` for config key ``dest``, unless it says one."""
    default = config_default(dest)
    if default is None or "default" in help_text:
        return help_text
    return f"{help_text} (default: {default})"


def _summary(cls: type) -> str:
    """The head's one-line description: its module's first sentence."""
    doc = (sys.modules[cls.__module__].__doc__ or inspect.getdoc(cls) or "").strip()
    text = " ".join(doc.split("\n\n")[0].split())
    return text.rstrip(".")


def _arg_docs(cls: type) -> dict[str, str]:
    """``{name: first sentence}`` from the ``Args:`` section of the class's docstring."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    section = re.split(r"^Args:\s*$", doc, maxsplit=1, flags=re.M)
    if len(section) < 2:
        return out
    name = None
    for line in section[1].splitlines():
        entry = re.match(r"^    (\w+)(?: \([^)]*\))?: (.*)$", line)
        if entry:
            name = entry.group(1)
            out[name] = entry.group(2).strip()
        elif name and line.startswith("        "):
            out[name] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break  # the next section
    return {k: v.split(". ")[0].rstrip(".") for k, v in out.items()}


def head_table() -> list[dict[str, Any]]:
    """Per head (sorted): name, description, {hyperparameter: default as train uses it}, and
    the docstring's description of each hyperparameter."""
    from marginface.heads import head_hparams, list_heads
    from marginface.heads.registry import head_class
    from marginface.heads.scale import resolve_scale

    table = []
    for name in list_heads():
        cls = head_class(name)
        defaults = dict(head_hparams(name))
        if "s" in defaults:
            _, choice = resolve_scale(name, 2, 3, {})
            if choice.rule is not None:
                defaults["s"] = "auto"  # train's default for the cosine heads
        table.append(
            {"name": name, "about": _summary(cls), "defaults": defaults, "args": _arg_docs(cls)}
        )
    return table


def head_groups_text(table: list[dict[str, Any]], width: int = 100) -> str:
    """The heads (one entry each: description, then its ``--head-X`` options and defaults)."""
    lines = []
    for head in table:
        options = ", ".join(
            f"--head-{k.replace('_', '-')} {v}" for k, v in head["defaults"].items()
        )
        lines += textwrap.wrap(
            f"{head['name']}: {head['about']}",
            width,
            initial_indent="  ",
            subsequent_indent="      ",
        )
        lines += textwrap.wrap(
            f"options (default): {options or 'none'}",
            width,
            initial_indent="      ",
            subsequent_indent="        ",
        )
    return "\n".join(lines)


#: what the hyperparameters many heads share mean (a head's own docstring says it for one head)
_SHARED = {
    "s": "scale of the logits (train's default for the cosine heads: auto, from the number "
    "of classes)",
    "m": "margin: angular in radians (ArcFace family), on the cosine (CosFace family) or "
    "SphereFace's integer multiplier",
}


def option_help(name: str, table: list[dict[str, Any]]) -> str:
    """Help of ``--head-NAME``: what it is (the shared meaning, or the first docstring that
    says) and which heads take it (their defaults are in the list of heads)."""
    heads = [h["name"] for h in table if name in h["defaults"]]
    about = _SHARED.get(name) or next((h["args"][name] for h in table if name in h["args"]), None)
    if about:
        about = re.sub(r" ?\((?:default )?[^()]*\)$", "", about)  # defaults: per head, above
    used = f"heads: {', '.join(heads)}"
    return f"{about} ({used})" if about else used
