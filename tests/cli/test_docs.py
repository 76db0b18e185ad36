"""The console examples of docs/cli.md run as written: same error lines, same exit codes."""

import re
import shlex
from pathlib import Path

from marginface.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def examples() -> list[tuple[str, list[str], int]]:
    """(command, expected stderr lines, exit code) of each ``$`` line of the console blocks."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, *rest = chunk.strip("\n").split("\n")
            code = 0
            if rest and (found := re.fullmatch(r"\[exit (\d+)\]", rest[-1])):
                code, rest = int(found.group(1)), rest[:-1]
            out.append((command, rest, code))
    return out


def matches(expected: list[str], got: list[str]) -> bool:
    pattern = "\n".join(".*" if line == "..." else re.escape(line) for line in expected)
    return re.fullmatch(pattern, "\n".join(got), flags=re.S) is not None


def test_console_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MARGINFACE_DEBUG", raising=False)
    found = examples()
    assert len(found) >= 5
    for command, expected, code in found:
        argv = shlex.split(command)
        assert argv[0] == "marginface"
        got = main(argv[1:])
        err = capsys.readouterr().err.strip().splitlines()
        assert got == code, (command, err)
        assert matches(expected, err), (command, err)
