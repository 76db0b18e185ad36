"""Render a dataset once into memory and share it between every head of the demo.

Rendering a synthetic face costs about 1 ms of CPU at 32 px; the demo trains several heads
(and seeds) on the same images, so it renders each item once into a uint8 array
(N, H, W, 3) and serves ``(image, label)`` from it, exactly as the source dataset would
(:func:`marginface.data.transforms.to_tensor` on the same pixels, the same random flip).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable

import numpy as np
import torch

from marginface.data import open_dataset
from marginface.data.base import FaceDataset
from marginface.data.transforms import NO_TRANSFORMS, Transforms, to_pixels, to_tensor

#: below this many items rendering stays in this process (a pool costs more than it saves)
_POOL_MIN_ITEMS = 1500
_CHUNK = 250


def _pixels_of(dataset: FaceDataset, index: int) -> np.ndarray:
    """The uint8 (H, W, 3) pixels of item ``index`` (no transforms)."""
    render = getattr(dataset, "render", None)
    if render is not None:  # synthetic faces: the Pillow image itself, no round trip
        return np.asarray(render(index), dtype=np.uint8)
    return to_pixels(dataset[index][0])


def _render_chunk(args: tuple[str, tuple[int, int], int, int]) -> np.ndarray:
    spec, size, start, stop = args
    dataset = open_dataset(spec, image_size=size)
    return np.stack([_pixels_of(dataset, i) for i in range(start, stop)])


class CachedFaces(FaceDataset):
    """A face dataset held in memory: ``(image float32 (3, H, W) in [-1, 1], label int)``.

    Has the attributes of :class:`~marginface.data.base.FaceDataset` (``num_classes``,
    ``identity_names``, ``labels``, ``image_size``) and applies its ``transforms`` to each item.
    ``pixels`` is the uint8 array (N, H, W, 3); ``spec`` the source's spec.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        labels: np.ndarray,
        identity_names: list[str],
        spec: str,
        transforms: Transforms = NO_TRANSFORMS,
    ) -> None:
        super().__init__((int(pixels.shape[1]), int(pixels.shape[2])), transforms)
        if len(pixels) != len(labels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        self.pixels = pixels
        self.labels = np.asarray(labels, dtype=np.int64)
        self.identity_names = list(identity_names)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.pixels)

    def load(self, index: int) -> torch.Tensor:
        return self.transforms(to_tensor(self.pixels[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load(index), int(self.labels[index])

    def with_transforms(self, transforms: Transforms) -> CachedFaces:
        """The same pixels (shared, not copied) with other ``transforms``."""
        return CachedFaces(self.pixels, self.labels, self.identity_names, self.spec, transforms)

    def images(self, indices: np.ndarray | None = None) -> torch.Tensor:
        """A batch (N, 3, H, W) of the (unflipped) images at ``indices`` (all by default)."""
        chosen = self.pixels if indices is None else self.pixels[np.asarray(indices)]
        batch = torch.from_numpy(np.ascontiguousarray(chosen)).permute(0, 3, 1, 2).float()
        return batch.mul_(1 / 127.5).sub_(1.0)

    def __repr__(self) -> str:
        return f"CachedFaces({self.spec!r}, items={len(self)}, image_size={self.image_size})"


def render_dataset(
    spec: str,
    image_size: int,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> CachedFaces:
    """Open ``spec`` (any :func:`marginface.data.open_dataset` spec) and render every item once.

    Args:
        spec: dataset spec, e.g. ``synthetic:400x20`` or a folder of identity folders.
        image_size: side of the square images.
        workers: processes rendering in parallel (for datasets of at least 1500 items).
        progress: called with the number of items just rendered (e.g. a tqdm ``update``).
    """
    dataset = open_dataset(spec, image_size=image_size)
    n = len(dataset)
    size = dataset.image_size
    if n == 0:
        raise ValueError(f"dataset {spec!r} is empty")
    chunks = [(spec, size, s, min(n, s + _CHUNK)) for s in range(0, n, _CHUNK)]
    parts: list[np.ndarray] = []
    if workers > 1 and n >= _POOL_MIN_ITEMS and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_render_chunk, chunks):
                parts.append(part)
                if progress is not None:
                    progress(len(part))
    else:
        for start, stop in (c[2:] for c in chunks):
            part = np.stack([_pixels_of(dataset, i) for i in range(start, stop)])
            parts.append(part)
            if progress is not None:
                progress(len(part))
    pixels = np.concatenate(parts)
    return CachedFaces(pixels, dataset.labels, list(dataset.identity_names), spec)
