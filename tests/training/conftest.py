"""Fixtures of the training tests: the real CLI entry point on tiny synthetic data."""

import sys
from pathlib import Path

import pytest
import torch

from marginface.cli import main

sys.path.insert(0, str(Path(__file__).parent))

# one thread: on the shared 2-core machines OpenMP threads waiting on each other make these tiny
# models 10-20x slower
torch.set_num_threads(1)


@pytest.fixture
def cli():
    """``cli(*args)`` -> exit code of ``marginface train ARGS``."""

    def run(*args: str) -> int:
        return main(["train", *map(str, args)])

    return run
