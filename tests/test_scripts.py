"""The set-up scripts choose their environment: the demo the runtime one (.venv), the tests, the
fuzzer and CI the development one (.venv-dev). Checked without installing anything: the
interpreter that would create the environment is ``false``, so each script stops right after
saying which environment it is creating."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "kind"),
    [("scripts/demo.sh", "runtime"), ("scripts/test.sh", "dev"), ("scripts/fuzz.sh", "dev"),
     (".ci/run", "dev")],
)  # fmt: skip
def test_each_script_makes_its_own_environment(tmp_path, script, kind):
    env = {**os.environ, "MARGINFACE_VENV": str(tmp_path / "venv"), "PYTHON": "false"}
    env.pop("MARGINFACE_ENV", None)
    done = subprocess.run(
        ["bash", str(ROOT / script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode != 0 and not (tmp_path / "venv").exists()
    assert f"creating the {kind} virtual environment in {tmp_path / 'venv'}" in done.stderr


def test_an_unknown_environment_is_refused(tmp_path):
    env = {**os.environ, "MARGINFACE_ENV": "full", "MARGINFACE_VENV": str(tmp_path / "v")}
    done = subprocess.run(
        ["bash", "-c", f". {ROOT / 'scripts/env.sh'}"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2 and "MARGINFACE_ENV must be runtime or dev, got 'full'" in (
        done.stderr
    )
