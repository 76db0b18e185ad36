"""torch on one thread inside a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside (restored after): on a shared, busy CPU two OpenMP threads
    made a tiny training step 70x slower (1.8 s against 0.026 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
