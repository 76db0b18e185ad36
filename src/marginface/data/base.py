"""The base class of every face dataset: labels known up front, bad items skipped and counted."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from marginface.data.transforms import NO_TRANSFORMS, Transforms, image_size_pair


class BadImageWarning(UserWarning):
    """An image could not be decoded; the dataset returned the next readable item instead."""


class TooManyUnreadableImages(ValueError):
    """More unreadable images than a dataset's ``max_bad`` allows; the message lists them."""


class FaceDataset(Dataset):
    """Map-style dataset of ``(image, label)``: image float32 (3, H, W) in [-1, 1], label int.

    Subclasses set ``labels`` (np.int64, one per item), ``identity_names`` and implement
    :meth:`load` (decode item ``index`` or raise) and :meth:`describe` (how to name item
    ``index`` in a warning: its path or record index).

    An item whose image cannot be decoded is replaced by the next readable item (so a batch keeps
    its size); it is counted once in :attr:`num_bad` and reported once with a warning. Past
    ``max_bad`` unreadable images (None: no limit) :class:`TooManyUnreadableImages` is raised,
    listing them. With DataLoader workers each worker process counts its own.
    """

    max_bad: int | None = None

    image_size: tuple[int, int]
    #: applied to every item after decoding (:class:`~marginface.data.transforms.Transforms`)
    transforms: Transforms
    #: photos -> aligned crops before resizing (``marginface ... --detect``); None: the images
    #: are aligned crops already. Used by the datasets of files (folders, pair lists, .bin).
    aligner = None

    def __init__(
        self, image_size: int | tuple[int, int] = 112, transforms: Transforms = NO_TRANSFORMS
    ) -> None:
        self.image_size = image_size_pair(image_size)
        self.transforms = transforms
        self._bad: set[int] = set()

    # --- what subclasses provide -------------------------------------------------------------
    labels: np.ndarray
    identity_names: Sequence[str]

    def load(self, index: int) -> torch.Tensor:
        """Decode item ``index`` into a (3, H, W) tensor; raise on an unreadable image."""
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """A human name for item ``index`` (path or record), used in warnings."""
        return f"item {index}"

    # --- the shared machinery ----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of identities (labels are 0 .. num_classes - 1)."""
        return len(self.identity_names)

    @property
    def num_bad(self) -> int:
        """Unreadable images met so far in this process."""
        return len(self._bad)

    def __len__(self) -> int:
        return len(self.labels)

    def position(self, index: int) -> int:
        """``index`` as a position in 0 .. len - 1 (a negative one counts from the end);
        IndexError when it is out of range."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        return index + n if index < 0 else index

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index, n = self.position(index), len(self)
        for step in range(n):
            i = (index + step) % n
            try:
                return self.load(i), int(self.labels[i])
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                self._report_bad(i, exc)
        raise ValueError(
            f"no readable image in the whole dataset of {n} items ({self.describe(0)} and every "
            f"other one cannot be decoded)"
        )

    def _report_bad(self, index: int, exc: BaseException) -> None:
        if index in self._bad:
            return
        self._bad.add(index)
        if self.max_bad is not None and len(self._bad) > self.max_bad:
            listed = [self.describe(i) for i in sorted(self._bad)[:20]]
            more = f" and {len(self._bad) - 20} more" if len(self._bad) > 20 else ""
            raise TooManyUnreadableImages(
                f"{len(self._bad)} unreadable images, more than the {self.max_bad} allowed "
                f"(max_bad_images): {', '.join(listed)}{more}; the last one: "
                f"{type(exc).__name__}: {exc}"
            )
        warnings.warn(
            f"unreadable image {self.describe(index)} ({type(exc).__name__}: {exc}); "
            "using the next readable item instead",
            BadImageWarning,
            stacklevel=3,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(items={len(self)}, classes={self.num_classes}, "
            f"image_size={self.image_size})"
        )


class ImagesOnly(Dataset):
    """View of a dataset that yields only the image tensors of the chosen items, in order.

    Used for pair sets: ``ImagesOnly(dataset, [i0, j0, i1, j1, ...])``.
    """

    def __init__(self, dataset: FaceDataset, indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    @property
    def num_bad(self) -> int:
        return self.dataset.num_bad

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[int(self.indices[index])][0]
