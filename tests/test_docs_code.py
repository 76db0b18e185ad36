"""Every ```python block of the README and docs/*.md runs as written (tests/_support/docs_code.py
says how, and how a block is marked to run differently); the package's ``>>>`` examples run as
doctests (pytest --doctest-modules over src/marginface, set in pyproject.toml)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest

from _support import docs_code

ROOT = docs_code.ROOT
DOCS = [p.relative_to(ROOT).as_posix() for p in docs_code.docs()]
WITH_CODE = [d for d in DOCS if docs_code.blocks(ROOT / d)]

#: what some examples print, checked as well (numbers the text around them quotes)
PRINTS = {
    "docs/heads_extra.md": ["22.5867", "uniface", "adacos fixed s 3.1073", "adacos dynamic s"],
    "docs/parallel.md": ["--- rank 0", "step 30: loss"],
}

#: blocks left out on purpose (a docs-test: skip marker), with the reason: kept rare
LEFT_OUT: set[str] = set()


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict:
    """Every doc's blocks, run in one separate process (docs_code.main)."""
    out = tmp_path_factory.mktemp("docs") / "results.json"
    tests = str(ROOT / "tests")
    path = os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, docs_code.__file__, str(out), *WITH_CODE],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("doc", WITH_CODE)
def test_python_blocks_run(ran, doc):
    result = ran[doc]
    assert result["error"] is None, f"{doc}:\n{result['error']}\nprinted:\n{result['stdout']}"
    for text in PRINTS.get(doc, []):
        assert text in result["stdout"], (doc, text)
    skipped = {why.split(": ", 1)[0] for why in result["left_out"] if "not installed" not in why}
    assert skipped <= LEFT_OUT, f"unexpected docs-test skip markers: {skipped - LEFT_OUT}"


def test_onnxruntime_recipe_matches_embed(ran):
    """docs/evaluation.md's onnxruntime recipe (the file's metadata, no marginface) gives
    marginface's embeddings, within the export check's tolerance on normalised embeddings."""
    out = ran["docs/evaluation.md"]["stdout"]
    if "largest difference from marginface embed" not in out:
        pytest.skip("onnxruntime not installed: the recipe was left out")
    found = re.search(r"largest difference from marginface embed: (\S+)", out)
    assert found is not None and float(found.group(1)) <= 1e-4, out[-500:]


def test_every_doc_with_python_is_run():
    """A doc gaining its first python block is run too (nothing to list by hand), and the
    markers parse everywhere."""
    assert "README.md" in WITH_CODE and len(WITH_CODE) >= 8
    assert sum(len(docs_code.blocks(ROOT / d)) for d in DOCS) >= 18


def test_markers_parse(tmp_path, monkeypatch):
    monkeypatch.setattr(docs_code, "ROOT", tmp_path)
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n\n<!-- docs-test: setup\nx = 1\n-->\n<!-- docs-test: requires nosuchmodule -->\n"
        "```python\nprint(x)\n```\n\n<!-- docs-test: skip shown, not run -->\n```python\n"
        "raise SystemExit\n```\n```python\nprint(x + 1)\n```\n"
    )
    found = docs_code.blocks(doc)
    assert [b.setup for b in found] == [["x = 1\n"], [], []]
    assert found[0].requires == ["nosuchmodule"] and found[1].skip == "shown, not run"
    result = docs_code.run_doc(doc, tmp_path)
    assert result["error"] is not None and "NameError" in result["error"]  # x: setup left out
    doc.write_text("<!-- docs-test: skip x -->\n\nsome text\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="not right before a block"):
        docs_code.blocks(doc)


def test_doctests_of_the_package_are_collected():
    """pytest collects src/marginface with --doctest-modules, so every ``>>>`` example of the
    package runs with the suite."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = options["ini_options"]
    assert "src/marginface" in options["testpaths"]
    assert "--doctest-modules" in options["addopts"]
    with_examples = [
        p for p in (ROOT / "src" / "marginface").rglob("*.py") if ">>>" in p.read_text()
    ]
    assert len(with_examples) >= 6
