"""Fuzz one target of ``tests/_support/fuzz_targets.py`` with atheris (libFuzzer's engine,
guided by the Python coverage of marginface and of Pillow's Python image plugins). Not part of
the test suite; ``scripts/fuzz.sh`` runs every target.

    python tests/fuzz/run.py TARGET [libFuzzer options] [CORPUS_DIR SEED_DIR ...]

e.g. ``python tests/fuzz/run.py image -runs=100000 /tmp/corpus tests/fuzz/seeds/image``. An
input that raises anything but ``fuzz_targets.ALLOWED`` stops the run and is written where
``-artifact_prefix`` says; keep it under ``tests/fuzz/crashers/TARGET/`` so that the suite
replays it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the _support helpers

with atheris.instrument_imports(include=["marginface", "PIL"]):
    from _support import fuzz_targets as targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: run.py TARGET [libFuzzer args]; targets: {', '.join(targets.TARGETS)}")
    name = sys.argv[1]

    def one_input(data: bytes) -> None:
        targets.run_one(name, data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
