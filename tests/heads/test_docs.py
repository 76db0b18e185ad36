"""The Python examples of docs/heads.md and the README run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", ["docs/heads.md", "README.md"])
def test_python_examples_run(doc):
    blocks = _blocks(ROOT / doc)
    assert blocks, f"{doc} has no python example"
    namespace: dict = {}
    for code in blocks:  # later blocks may use names from earlier ones
        exec(compile(code, doc, "exec"), namespace)
