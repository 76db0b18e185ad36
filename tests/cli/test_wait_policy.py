"""The CLI makes waiting OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) before torch loads, unless
the user chose a policy: spinning threads slow a step 3-6x on a machine busy with other work."""

import os
import subprocess
import sys

import pytest

CODE = (
    "import os, sys\n"
    "from marginface.cli import main\n"
    "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
    "print(os.environ.get('OMP_WAIT_POLICY'))\n"
)


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_policy_set_unless_given(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          check=True, env=env)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == expected


def test_policy_set_before_torch_loads():
    code = "import sys\nimport marginface.cli\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # the CLI module itself does not load torch
