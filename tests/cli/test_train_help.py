"""``marginface train --help``: every option's default (from TrainConfig), every head listed with
its description and options, no bare ``--head-X V`` line."""

import re

import pytest

from marginface.cli import main
from marginface.heads import head_hparams, list_heads
from marginface.training.config import TrainConfig


@pytest.fixture(scope="module")
def help_text():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    return out.getvalue()


def _entry(text: str, flag: str) -> str:
    """The help of ``flag``: its line and the indented lines after it, joined."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^  {flag}\b", line))
    body = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 8) or re.match(r"^  --", line):
            break
        body.append(line)
    return " ".join(" ".join(body).split())


def test_defaults_come_from_the_config(help_text):
    from marginface.training.config import (
        DEFAULT_LR,
        FINETUNE_EPOCHS,
        FINETUNE_OPTIMIZER,
        SCRATCH_EPOCHS,
        SCRATCH_MODEL,
        SCRATCH_OPTIMIZER,
    )

    defaults = TrainConfig()
    for flag, key in [("--batch-size", "batch_size"), ("--head", "head")]:
        assert f"(default: {getattr(defaults, key)})" in _entry(help_text, flag), flag
    rates = ", ".join(f"{lr:g} with {name}" for name, lr in DEFAULT_LR.items())
    assert f"(default: {rates})" in _entry(help_text, "--lr")
    optimizer = f"(default: {SCRATCH_OPTIMIZER}; {FINETUNE_OPTIMIZER} with --init)"
    assert optimizer in _entry(help_text, "--optimizer")
    for flag, key in [("--backbone", "backbone"), ("--image-size", "image_size"),
                      ("--embedding-size", "embedding_size")]:  # fmt: skip
        said = f"(default: {SCRATCH_MODEL[key]}; with --init, the model's)"
        assert said in " ".join(_entry(help_text, flag).split()), flag
    epochs = f"(default: {SCRATCH_EPOCHS}; {FINETUNE_EPOCHS} with --init)"
    assert epochs in _entry(help_text, "--epochs")
    assert "(default: off)" in _entry(help_text, "--grad-clip")
    assert "(default: sized so that validation takes under ~15%" in _entry(help_text, "--max-pairs")
    assert "(default: all epochs)" in _entry(help_text, "--max-steps")
    assert "default" not in _entry(help_text, "--quiet")  # a flag: off unless given


def test_every_head_option_is_described_and_every_head_listed(help_text):
    flags = re.findall(r"^  (--head-[a-z0-9-]+) V", help_text, flags=re.M)
    names = {k for h in list_heads() for k in head_hparams(h)}
    assert sorted(flags) == sorted(f"--head-{n.replace('_', '-')}" for n in names)
    for flag in flags:
        entry = _entry(help_text, flag)
        assert len(entry) > len(flag) + 10 and "heads:" in entry, entry  # never bare
    section = help_text.split("heads (--head NAME)", 1)[1].split("head hyperparameters:")[0]
    flat = " ".join(section.split())
    for head in list_heads():
        assert f" {head}: " in f" {flat}", head
    assert "arcface: ArcFace (Deng et al., CVPR 2019)" in flat
    arcface = flat.split("arcface: ", 1)[1].split(" combined: ")[0]
    assert "--head-s auto, --head-m 0.5, --head-easy-margin False" in arcface
    assert "--head-bias True" in flat.split("softmax: ", 1)[1]
