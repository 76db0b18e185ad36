"""The layers of docs/CONTRACTS.md: a part of the package imports only from the layers below
it. Every ``import marginface.X`` and ``from marginface.X import`` is checked, those inside
functions (lazy imports) too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import marginface

SRC = Path(marginface.__file__).parent

#: lowest first; the parts of one layer do not import each other. The package's __init__ (the
#: lazy facade over heads and backbones) is not a layer.
LAYERS = [
    {"text", "checks", "lazy"},
    {"files", "devices", "settings", "checksum"},
    {"heads"},
    {"parallel", "compat"},
    {"backbones"},
    {"data"},
    {"evaluation"},
    {"inference"},
    {"training"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def part_of(path: Path) -> str:
    """``heads`` for src/marginface/heads/arcface.py, ``files`` for src/marginface/files.py."""
    relative = path.relative_to(SRC).parts
    return relative[0] if len(relative) > 1 else Path(relative[0]).stem


def imported_parts(path: Path) -> list[tuple[str, int]]:
    """(part of marginface imported, line) for every import of ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "marginface":
                names = [f"marginface.{a.name}" for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "marginface" and len(parts) > 1:
                out.append((parts[1], node.lineno))
    return out


def test_every_part_has_a_layer():
    parts = {part_of(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert parts <= set(LEVEL), f"add to LAYERS (and docs/CONTRACTS.md): {parts - set(LEVEL)}"


def test_imports_go_down_the_layers():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        part = part_of(path)
        if part == "__init__":
            continue
        for target, line in imported_parts(path):
            if target != part and LEVEL.get(target, -1) >= LEVEL[part]:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {part} imports {target}")
    assert not wrong, "imports against the layers (docs/CONTRACTS.md):\n" + "\n".join(wrong)


def test_lazy_imports_count(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from marginface.heads import create_head\n"
        "def f():\n    import marginface.training.loop\n    from marginface import data\n"
    )
    assert imported_parts(module) == [("heads", 1), ("training", 3), ("data", 4)]
