"""The example of docs/heads_extra.md runs."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "heads_extra.md"


def test_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert "22.5867" in out and "uniface" in out
    assert "adacos fixed s 3.1073" in out and "adacos dynamic s" in out
