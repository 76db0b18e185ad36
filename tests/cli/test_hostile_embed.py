"""Issue 22, embed: a folder holding a file whose name is not UTF-8; warnings carry the
command's prefix."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import marginface
from marginface.cli import main

NOT_UTF8 = os.fsdecode(b"caf\xe9.png")


def faces(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "good.png")
    Image.fromarray(np.full((16, 16, 3), 30, np.uint8)).save(root / NOT_UTF8)
    (root / os.fsdecode(b"bad\xff.png")).write_bytes(b"not a png")
    return root


def test_embed_non_utf8_file_name_writes_the_npz(trained_run, tmp_path, capsys):
    out = tmp_path / "e.npz"
    assert main(["embed", str(faces(tmp_path)), "--checkpoint", str(trained_run), "--output",
                 str(out), "--quiet"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"marginface embed: warning: skipped unreadable image {tmp_path / 'faces'}/bad\\udcff.png"
    )
    assert "cannot identify image file" in err[0] and f"wrote {out}" in captured.out
    with np.load(out) as data:
        assert sorted(data["names"].tolist()) == sorted([NOT_UTF8, "good.png"])
        assert data["embeddings"].shape[0] == 2


def test_embed_non_utf8_file_name_in_a_real_process(trained_run, tmp_path):
    """With stdout a pipe in the C locale's strict encoding, nothing fails to print."""
    out = tmp_path / "e.npz"
    env = {**os.environ, "PYTHONPATH": str(Path(marginface.__file__).parents[1]),
           "LC_ALL": "C", "PYTHONIOENCODING": "ascii:strict"}  # fmt: skip
    argv = [sys.executable, "-m", "marginface", "embed", str(faces(tmp_path)), "--checkpoint",
            str(trained_run), "--output", str(out), "--quiet"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode("ascii").strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marginface embed: warning: skipped unreadable")
    assert out.is_file()


def test_a_non_utf8_output_name_prints(tmp_path):
    """A path from the command line with bytes stdout cannot encode is printed escaped."""
    out = tmp_path / os.fsdecode(b"sheet\xff.png")
    env = {**os.environ, "PYTHONPATH": str(Path(marginface.__file__).parents[1]),
           "PYTHONIOENCODING": "utf-8:strict"}  # fmt: skip
    argv = [sys.executable, "-m", "marginface", "synth", "--data", "synthetic:2x2", "--preview",
            os.fsencode(out)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    assert b"sheet\\udcff.png" in done.stdout and out.is_file()
