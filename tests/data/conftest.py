"""Fixtures for the data tests: tiny folders of exact-pixel PNG identities."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def random_pixels(seed: int, size: tuple[int, int] = (20, 24)) -> np.ndarray:
    """A deterministic random RGB image (H, W, 3) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, list[np.ndarray]]]]:
    """``make_folder(counts, size=(20, 24), name="faces")`` writes PNG identity folders.

    ``counts`` maps identity name -> number of images. Returns the folder and the pixels written
    (per identity, in file order).
    """

    def make(
        counts: dict[str, int], size: tuple[int, int] = (20, 24), name: str = "faces"
    ) -> tuple[Path, dict[str, list[np.ndarray]]]:
        root = tmp_path / name
        written: dict[str, list[np.ndarray]] = {}
        for n, (identity, count) in enumerate(counts.items()):
            (root / identity).mkdir(parents=True)
            written[identity] = []
            for i in range(count):
                pixels = random_pixels(1000 * n + i, size)
                Image.fromarray(pixels).save(root / identity / f"{identity}_{i + 1:04d}.png")
                written[identity].append(pixels)
        return root, written

    return make
