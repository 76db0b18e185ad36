"""``marginface demo --help`` says the defaults the demo uses (and their ``--quick`` values)."""

from __future__ import annotations

import re

from marginface.cli import build_parser
from marginface.demo.config import QUICK, DemoConfig, make_config


def _demo_parser():
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["demo"]


def test_every_default_in_the_help_is_the_demos():
    default, quick = make_config(), make_config(quick=True)
    fields = DemoConfig.__dataclass_fields__
    checked = 0
    for action in _demo_parser()._actions:
        name = action.dest
        if name not in fields or not action.help:
            continue
        said = re.search(r"\(default ([^;)]+)", action.help)
        if action.default is not None:  # an argparse default: the demo must use the same
            want = getattr(DemoConfig(), name)
            assert action.default == (",".join(want) if name == "heads" else want), name
        if said is None:
            continue
        value = getattr(default, name)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        if isinstance(value, list):  # --heads: comma-separated
            text = ",".join(value)
        assert said.group(1).split(" =")[0] == text, (name, action.help)
        quick_said = re.search(r"--quick: ([^;)]+)", action.help)
        if name in QUICK and QUICK[name] != value:
            q = getattr(quick, name)
            assert quick_said and quick_said.group(1) == (f"{q:g}" if isinstance(q, float) else
                                                          str(q)), (name, action.help)  # fmt: skip
        else:
            assert quick_said is None, (name, action.help)
        checked += 1
    # epochs, batch size, optimizer, lr, embedding size, image size, difficulty, seeds, heads,
    # threads, workers
    assert checked >= 10
    assert "(default 0.7)" in next(a.help for a in _demo_parser()._actions
                                   if a.dest == "difficulty")  # fmt: skip
