"""Issue 22's hostile ``.bin`` files, each through ``read_bin`` and ``marginface eval --pairs``.

They run in one child process (``tests/_support/hostile_bins.py``): several of them crashed the
interpreter (SIGSEGV) or allocated gigabytes before the pickle machine, and a crash there
fails the cases it did not reach instead of killing pytest.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _support.hostile_bins import cases

HERE = Path(__file__).parents[1]
CASES = cases()


@pytest.fixture(scope="module")
def results(saved_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, str(HERE / "_support" / "hostile_bins.py"), str(saved_model), str(folder)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    found = {}
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        found[record["case"]] = record
    return found, proc


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_bin(results, name):
    found, proc = results
    assert name in found, (
        f"the child stopped before {name}: exit {proc.returncode} "
        f"(a negative exit is a signal: -11 SIGSEGV), stderr tail: {proc.stderr[-2000:]}"
    )
    record, expected = found[name], CASES[name][1]
    kind, _, fragment = expected.partition(" ")
    path = f"{name}.bin"
    if kind == "ok":
        assert record["read"] == expected
    else:
        assert record["read"].startswith("ValueError: ") and path in record["read"]
        if kind == "refused":
            assert f"{path}: refused: the pickle asks for " in record["read"]
            assert "nothing in it was run" in record["read"]
        elif kind == "damaged":
            assert f"{path} is not a verification .bin pickle (damaged: " in record["read"]
        assert fragment in record["read"], record["read"]
        # the CLI: one line naming the file, exit 2 (bad input, docs/cli.md)
        assert record["code"] == 2 and len(record["stderr"]) == 1, record
        assert record["stderr"][0].startswith("marginface eval: error: ")
        assert path in record["stderr"][0] and fragment in record["stderr"][0]
    if kind == "ok":  # a one-pair file: eval names why it cannot score it (exit 2)
        assert record["code"] == 2 and len(record["stderr"]) == 1, record
        assert "needs both genuine and impostor pairs" in record["stderr"][0]
    # memory: at most 10x the file's size (the file itself included) plus 256 KiB
    assert record["peak"] <= 10 * record["size"] + (1 << 18), record["peak"]
