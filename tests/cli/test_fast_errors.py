"""A mistyped input path is said before the heavy imports (torch, the model): the error comes at
once, not after seconds of loading (measured in docs/cli.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import marginface

CHECK = """
import sys
from marginface.cli import main
code = main(sys.argv[1:])
print("torch imported:", "torch" in sys.modules, "exit", code)
"""


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["verify", "held10/07271.jpg", "{photo}"], "image held10/07271.jpg does not exist"),
        (["verify", "{photo}", "held10/x.jpg"], "image held10/x.jpg does not exist"),
        (["embed", "held10", "--output", "{tmp}/e.npz"], "input held10 does not exist"),
        (["search", "held10/07271.jpg", "--gallery", "{photo}"], "query image held10/07271.jpg"),
        (["search", "{tmp}", "--gallery", "{tmp}/g.npz"], "gallery {tmp}/g.npz does not exist"),
    ],
    ids=["verify-a", "verify-b", "embed", "search-query", "search-gallery"],
)
def test_missing_inputs_are_said_before_torch_is_imported(tmp_path, saved_model, argv, said):
    photo = tmp_path / "a.png"
    photo.write_bytes(b"")  # exists: the other input is the missing one
    fill = {"photo": str(photo), "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in argv] + ["--checkpoint", str(saved_model)]
    env = {"PYTHONPATH": str(Path(marginface.__file__).parents[1]), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert f"marginface {argv[0]}: error: {said.format(**fill)}" in done.stderr
    assert "torch imported: False exit 2" in done.stdout, done.stdout + done.stderr
