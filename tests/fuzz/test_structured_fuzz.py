"""A fast slice of the structured ``.bin`` fuzzer (``tests/fuzz/structured.py``; the full run,
100,000 inputs, is in ``scripts/fuzz.sh``): a few hundred pickles built from the allowed
opcodes and globals, mutated valid files and amplifiers, in a child process, with no crash,
hang, unexpected error or allocation above 10x the input's size (plus a fixed allowance)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "structured_fuzz", Path(__file__).parent / "structured.py"
)
structured = importlib.util.module_from_spec(spec)
spec.loader.exec_module(structured)


def test_structured_fuzz_slice():
    failures, done = structured.run(300, seed=22, batch=300, timeout=60.0, slow=5.0)
    assert done == 300
    assert failures == []


def test_inputs_are_reproducible_and_varied():
    from _support.pickle_fuzz import make_input

    inputs = [make_input(22, i) for i in range(200)]
    assert inputs == [make_input(22, i) for i in range(200)]
    assert len(set(inputs)) > 190  # a few tiny ones repeat
    protocols = {data[1] for data in inputs if data[:1] == b"\x80"}
    assert {2, 3, 4, 5} <= protocols
