"""The ```python blocks of the README and docs/*.md, and a runner for them.

A doc's blocks run in order in one namespace (a later block may use the names of an earlier
one), in a fresh folder of its own. An HTML comment right before a block (invisible on the
rendered page) changes how it runs:

- ``<!-- docs-test: setup`` CODE ``-->``: CODE runs first, in the same namespace; it makes
  what the text around the block describes (a folder of images written by an earlier shell
  command, an image and its landmarks);
- ``<!-- docs-test: ranks=N -->``: the block is a torchrun script: it runs as N local
  processes (``_support.launch``), not in the namespace;
- ``<!-- docs-test: requires MODULE ... -->``: the block needs optional packages; it is left
  out (and reported) when one is not installed;
- ``<!-- docs-test: skip REASON -->``: the block does not run; the reason is reported. Kept
  rare: a block that cannot run is better made runnable or shown as ```text.

Run as a script, ``python docs_code.py OUT.json DOC.md ...`` runs every DOC and writes
``{doc: {"error": traceback or None, "stdout": ..., "left_out": [why, ...], "blocks": N}}``;
the test (tests/test_docs_code.py) runs it in a separate process so that nothing the examples
register (a backbone, a head) or change stays in the test process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!-- docs-test: (\w+)(?:[ =](.*?))?\s*(-->)?\s*$")


@dataclass
class Block:
    """One ```python block of a doc and the markers before it."""

    doc: str
    line: int  # of the opening fence, 1-based
    code: str
    setup: list[str] = field(default_factory=list)
    ranks: int = 0
    requires: list[str] = field(default_factory=list)
    skip: str | None = None


def docs() -> list[Path]:
    """The README and every docs/*.md, in that order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of ``path`` with their markers; ValueError for a marker that is
    not followed by a python block, or an unknown one."""
    lines = path.read_text().splitlines()
    doc = path.relative_to(ROOT).as_posix()
    out: list[Block] = []
    pending: dict = {"setup": [], "ranks": 0, "requires": [], "skip": None}
    marked_at = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            kind, rest, closed = marker.group(1), (marker.group(2) or "").strip(), marker.group(3)
            marked_at = i + 1
            if kind == "setup":
                body, i = [], i + 1
                while lines[i].strip() != "-->":
                    body.append(lines[i])
                    i += 1
                pending["setup"].append("\n".join(body) + "\n")
            elif not closed:
                raise ValueError(f"{doc}:{i + 1}: a one-line docs-test marker must end with -->")
            elif kind == "ranks":
                pending["ranks"] = int(rest)
            elif kind == "requires":
                pending["requires"] += rest.split()
            elif kind == "skip" and rest:
                pending["skip"] = rest
            else:
                raise ValueError(f"{doc}:{i + 1}: unknown docs-test marker {line!r}")
        elif fence:
            language, start, body = fence.group(1), i + 1, []
            i += 1
            while not _FENCE.match(lines[i]) or _FENCE.match(lines[i]).group(1):
                body.append(lines[i])
                i += 1
            if language == "python":
                out.append(Block(doc, start, "\n".join(body) + "\n", **pending))
            elif marked_at is not None:
                raise ValueError(f"{doc}:{marked_at}: docs-test marker before a {language} block")
            pending = {"setup": [], "ranks": 0, "requires": [], "skip": None}
            marked_at = None
        elif line.strip() and marked_at is not None:
            raise ValueError(f"{doc}:{marked_at}: docs-test marker not right before a block")
        i += 1
    return out


def run_doc(path: Path, folder: Path) -> dict:
    """Run the blocks of ``path`` in ``folder``; what happened (see the module doc)."""
    from _support.launch import launch

    found = blocks(path)
    namespace: dict = {"__name__": "__docs__"}
    left_out: list[str] = []
    stdout = io.StringIO()
    error = None
    here = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout):
            for block in found:
                where = f"{block.doc}:{block.line}"
                missing = [m for m in block.requires if importlib.util.find_spec(m) is None]
                if block.skip or missing:
                    why = block.skip or f"needs {', '.join(missing)} (not installed)"
                    left_out.append(f"{where}: {why}")
                    continue
                for code in block.setup:
                    exec(compile(code, f"{where} (setup)", "exec"), namespace)
                if block.ranks:
                    script = folder / f"block{block.line}.py"
                    script.write_text(block.code)
                    for rank, text in enumerate(launch(script, block.ranks, [], timeout=300)):
                        print(f"--- rank {rank}\n{text}", end="")
                else:
                    exec(compile(block.code, where, "exec"), namespace)
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        error = traceback.format_exc()
    finally:
        os.chdir(here)
    return {"error": error, "stdout": stdout.getvalue(), "left_out": left_out, "blocks": len(found)}


def main(argv: list[str]) -> int:
    out, names = Path(argv[0]), argv[1:]
    import matplotlib
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(1)  # as the suite (tests/conftest.py): tiny models, shared cores
    results = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="docs-code-") as folder:
            results[name] = run_doc(ROOT / name, Path(folder))
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: _support
    sys.exit(main(sys.argv[1:]))
