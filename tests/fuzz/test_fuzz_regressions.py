"""Every kept fuzzing seed and crasher replays cleanly: the readers of untrusted files raise
only their documented errors (ValueError, OSError, EOFError) and run nothing."""

from pathlib import Path

import pytest

from _support.fuzz_seeds import all_seeds
from _support.fuzz_targets import TARGETS, run_one

HERE = Path(__file__).parent
KEPT = sorted(
    (p.parent.name, p)
    for kind in ("seeds", "crashers")
    for p in (HERE / kind).glob("*/*")
    if p.is_file() and p.parent.name in TARGETS
)


@pytest.mark.parametrize("target, path", KEPT, ids=[f"{t}/{p.name}" for t, p in KEPT])
def test_kept_input_replays_cleanly(target, path):
    run_one(target, path.read_bytes())
    assert not Path("/tmp/marginface-fuzz-PWNED").exists()


def test_seeds_on_disk_are_current():
    """tests/fuzz/seeds/ is what _support/fuzz_seeds.py writes (regenerate with
    python tests/_support/fuzz_seeds.py), and every target has seeds."""
    for target, seeds in all_seeds().items():
        assert target in TARGETS
        on_disk = {p.name for p in (HERE / "seeds" / target).iterdir()}
        assert on_disk >= set(seeds), target


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_truncations_of_every_seed(target):
    """Every prefix of every seed (a cheap, deterministic slice of what the fuzzer tries)."""
    for path in (HERE / "seeds" / target).iterdir():
        data = path.read_bytes()
        for cut in range(0, len(data), max(1, len(data) // 64)):
            run_one(target, data[:cut])
