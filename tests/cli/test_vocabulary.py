"""One vocabulary on the command line: the same flag for the same thing in every command, the
older spellings kept as aliases left out of --help (docs/cli.md lists them), --head-kwargs flat
or per head everywhere, and commands that do not train never import torch to parse."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import numpy as np
import pytest

from marginface.cli import build_parser, main
from marginface.cli._use import head_kwargs_for

#: (command, alias, flag, value): the alias still parses to what the flag gives
ALIASES = [
    ("train", "--val", "--pairs", "lfw.bin"),
    ("train", "--val-max-pairs", "--max-pairs", "500"),
    ("train", "--no-progress", "--quiet", None),
    ("train", "--num-workers", "--workers", "3"),
    ("eval", "--num-workers", "--workers", "3"),
    ("embed", "--out", "--output", "e.npz"),
    ("export", "--onnx", "--output", "m.onnx"),
    ("synth", "--spec", "--data", "synthetic:3x2"),
]

#: what the rest of each command line needs to parse
BASE = {
    "train": [],
    "eval": ["--checkpoint", "run", "--output", "report"],
    "embed": ["faces", "--checkpoint", "run", "--output", "x.npz"],
    "export": ["--checkpoint", "run", "--output", "x.onnx"],
    "synth": [],
}


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _parse(command: str, flag: str, value: str | None) -> dict:
    base = list(BASE[command])
    if flag in base:  # the required output given by the flag under test
        i = base.index(flag)
        del base[i : i + 2]
    elif command in ("embed", "export") and flag in ("--out", "--onnx"):
        i = base.index("--output")
        del base[i : i + 2]
    argv = [command, *base, flag, *([] if value is None else [value])]
    return vars(build_parser().parse_args(argv))


@pytest.mark.parametrize(("command", "alias", "flag", "value"), ALIASES)
def test_alias_parses_as_the_flag(command, alias, flag, value):
    assert _parse(command, alias, value) == _parse(command, flag, value)


@pytest.mark.parametrize(("command", "alias", "flag", "value"), ALIASES)
def test_help_shows_the_flag_not_the_alias(command, alias, flag, value):
    text = commands()[command].format_help()
    assert flag in text
    assert re.search(re.escape(alias) + r"(?![\w-])", text) is None  # --val, not --val-every


def test_one_spelling_per_thing_in_every_help():
    """No command offers an older spelling in its help; the shared flags mean one thing."""
    old = {alias for _, alias, _, _ in ALIASES}
    for name, parser in commands().items():
        shown = {
            s for a in parser._actions for s in a.option_strings if a.help != argparse.SUPPRESS
        }
        hidden = {s for a in parser._actions for s in getattr(a, "hidden_aliases", ())}
        assert not (shown - hidden) & old, name
    for name in ("embed", "eval", "search", "verify", "align", "pack", "synth", "demo"):
        assert "--quiet" in commands()[name].format_help(), name
    assert "--quiet" in commands()["train"].format_help()


def test_old_spelling_still_works_end_to_end(saved_model, tmp_path, capsys):
    out = tmp_path / "e.npz"
    code = main(["embed", "synthetic:2x2", "--checkpoint", str(saved_model), "--out", str(out),
                 "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with np.load(out) as data:
        assert data["embeddings"].shape == (4, 8)


def test_head_kwargs_flat_or_per_head():
    per_head = {"arcface": {"s": 64}, "cosface": {"s": 30, "m": 0.4}}
    assert head_kwargs_for(per_head, ["arcface"]) == {"arcface": {"s": 64}}
    assert head_kwargs_for(per_head, ["softmax", "cosface"]) == {
        "softmax": {},
        "cosface": {"s": 30, "m": 0.4},
    }
    # flat: one head takes it all (create_head checks); several: each head what it has
    assert head_kwargs_for({"s": 64, "m": 0.3}, ["arcface"]) == {"arcface": {"s": 64, "m": 0.3}}
    assert head_kwargs_for({"s": 64}, ["softmax", "arcface", "cosface"]) == {
        "softmax": {},
        "arcface": {"s": 64},
        "cosface": {"s": 64},
    }
    with pytest.raises(ValueError, match="none of softmax, arcface has a hyperparameter 'q'"):
        head_kwargs_for({"q": 1}, ["softmax", "arcface"])
    with pytest.raises(ValueError, match="arcfase is a mapping but not a head name"):
        head_kwargs_for({"arcfase": {"s": 64}}, ["arcface"])


def test_train_takes_a_per_head_mapping(tmp_path):
    from marginface.cli.train import build_config

    args = build_parser().parse_args(
        ["train", "--head", "cosface", "--head-kwargs", "{arcface: {s: 64}, cosface: {s: 30}}",
         "--head-m", "0.3", "--output", str(tmp_path)]
    )  # fmt: skip
    assert build_config(args).head_kwargs == {"s": 30, "m": 0.3}
    config = tmp_path / "c.yaml"
    config.write_text("head: arcface\nhead_kwargs: {arcface: {s: 16}, cosface: {s: 30}}\n")
    args = build_parser().parse_args(["train", "--config", str(config)])
    assert build_config(args).head_kwargs == {"s": 16}


def test_demo_takes_a_flat_mapping(tmp_path, monkeypatch):
    import marginface.demo as demo

    seen = {}

    def fake_run(config):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(demo, "run_demo", fake_run)
    with pytest.raises(SystemExit):
        main(["demo", "--quick", "--heads", "softmax,arcface", "--head-kwargs", "{s: 64}",
              "--output", str(tmp_path)])  # fmt: skip
    config = seen["config"]
    assert config.head_kwargs["arcface"] == {"s": 64} and "softmax" not in config.head_kwargs


@pytest.mark.parametrize("argv", [["--help"], ["pack", "--help"], ["align", "--help"]])
def test_help_imports_neither_torch_nor_the_trainer(argv):
    code = (
        "import sys\n"
        "from marginface.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'marginface.training', 'marginface.heads')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_train_help_still_lists_the_head_options():
    text = commands()["train"].format_help()
    assert "--head-s V" in text and "--head-lambda-min V" in text
