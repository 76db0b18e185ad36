"""Folder datasets: ``ROOT/<identity>/<image>``, one sub-folder per identity."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from marginface.data.base import FaceDataset
from marginface.data.transforms import IMAGE_EXTENSIONS, NO_TRANSFORMS, Transforms, load_tensor
from marginface.text import printable


def is_image_file(path: Path) -> bool:
    """True for a file whose extension is one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_image_files(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (recursively), as sorted POSIX paths relative to it: how
    ``align --detect``, ``embed`` and ``search`` list a folder of photos.

    Only regular files are listed (a FIFO named ``x.jpg`` is not a photo). A symlinked folder
    is followed when it leads to a folder inside ``folder``; one that leads outside, or to a
    folder above it (a loop), is skipped, and a warning says how many were and why. File
    names may hold any bytes: a name that is not UTF-8 keeps its bytes as surrogate escapes
    (``os.fsdecode``)."""
    folder = Path(folder)
    root = folder.resolve()
    outside, looped = [], []
    files = []
    pending = [(folder, "", (root,))]  # folder, its relative prefix, the real folders above
    while pending:
        directory, prefix, above = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    real = Path(entry.path).resolve()
                    pending.append((Path(entry.path), relative + "/", (*above, real)))
                elif entry.is_symlink() and entry.is_dir():
                    real = Path(entry.path).resolve()
                    if real != root and root not in real.parents:
                        outside.append(relative)
                    elif real in above:
                        looped.append(relative)
                    else:
                        pending.append((Path(entry.path), relative + "/", (*above, real)))
                elif entry.is_file() and is_image_file(Path(entry.name)):
                    files.append(relative)
    for links, why in ((outside, "lead outside it"), (looped, "lead to a folder above them")):
        if links:
            warnings.warn(
                f"skipped {len(links)} linked folder(s) under {printable(folder)} that {why} "
                f"(e.g. {printable(links[0])})",
                stacklevel=2,
            )
    return sorted(files, key=lambda name: name.split("/"))  # as sorted Paths would be


def scan_folder(root: str | os.PathLike) -> tuple[list[str], list[Path], np.ndarray]:
    """List an identity folder tree.

    Returns ``(identity_names, image_paths, labels)``: identities are the sub-folders of ``root``
    sorted by name (label = position), images the image files below each (recursively, sorted).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` has no identity sub-folders, one of them holds no image, or one is
            a link to ``root`` or a folder above it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist (or is not a folder)")
    identities = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not identities:
        raise ValueError(
            f"dataset folder {root} has no identity sub-folders "
            "(expected ROOT/<identity>/<image files>)"
        )
    names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    real_root = root.resolve()
    for label, folder in enumerate(identities):
        real = folder.resolve()
        if real == real_root or real in real_root.parents:
            raise ValueError(
                f"identity folder {folder} links to {real}, the dataset folder itself or one "
                "above it: it would become one identity holding every image. Remove the link"
            )
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise ValueError(
                f"identity folder {folder} holds no image "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        names.append(folder.name)
        paths.extend(files)
        labels.extend([label] * len(files))
    return names, paths, np.asarray(labels, dtype=np.int64)


class FolderDataset(FaceDataset):
    """Images under ``ROOT/<identity>/``, any size, grey or colour, resized to ``image_size``.

    Args:
        root: the dataset folder.
        image_size: output size (int or (H, W)).
        transforms: applied to every item (:class:`~marginface.data.transforms.Transforms`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int | tuple[int, int] = 112,
        transforms: Transforms = NO_TRANSFORMS,
    ) -> None:
        super().__init__(image_size, transforms)
        self.root = Path(root)
        self.identity_names, self.paths, self.labels = scan_folder(self.root)

    def load(self, index: int) -> torch.Tensor:
        return load_tensor(self.paths[index], self.image_size, self.transforms, self.aligner)

    def describe(self, index: int) -> str:
        return str(self.paths[index])
