"""Tiny models and pair sets of the evaluation tests (the trained run and the face folder they
share with the CLI tests are in tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from _support.threads import one_thread

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _evaluation_tests_on_one_thread():
    """Every test of this folder runs torch on one thread; other folders are untouched."""
    with one_thread():
        yield


@pytest.fixture
def pair_set() -> SimpleNamespace:
    """40 pairs of 16x16 images: genuine pairs are noisy copies, impostors unrelated."""
    gen = torch.Generator().manual_seed(0)
    n = 40
    issame = np.arange(n) % 2 == 0
    images = []
    for same in issame:
        a = torch.rand((3, 16, 16), generator=gen) * 2 - 1
        b = (
            a + 0.05 * torch.randn((3, 16, 16), generator=gen)
            if same
            else (torch.rand((3, 16, 16), generator=gen) * 2 - 1)
        )
        images += [a, b]
    return SimpleNamespace(images=TensorDataset(torch.stack(images)), issame=issame, name="toy")
