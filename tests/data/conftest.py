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


def astronaut_path() -> Path | None:
    """scikit-image's ``data/astronaut.png`` (a public-domain 512x512 portrait), found without
    importing scikit-image; None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "astronaut.png"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    path = astronaut_path()
    if path is None:
        pytest.skip("scikit-image (a test dependency: pip install -e .[dev]) ships astronaut.png")
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="session")
def detector():
    """The MTCNN detector on the CPU; the weights come with facenet-pytorch (scripts/env.sh
    installs it with --no-deps)."""
    from marginface.data.detect import FaceDetector
    from marginface.data.mtcnn import weights_folder

    try:
        weights_folder()
    except FileNotFoundError as exc:
        pytest.skip(f"MTCNN weights absent: {exc}")
    return FaceDetector()
