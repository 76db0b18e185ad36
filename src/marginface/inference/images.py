"""Loose image files for the use commands (embed, verify, search): listing and loading.

Decoding, resizing and normalising are marginface.data's (:func:`load_tensor`); this module
only lists files and keeps track of the ones that cannot be read, so that an embedding is
never attributed to the wrong file name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from marginface.data.detection.detect import NoFaceError
from marginface.data.transforms import IMAGE_EXTENSIONS, load_tensor
from marginface.evaluation.embed import EmbedOptions, embed_dataset

#: The reason :class:`ImageFiles` records for a photo in which the detector found no face.
NO_FACE = "no face found"


def is_image_path(path: Path) -> bool:
    """A visible file with an image extension (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively, symlinked folders inside it followed: see
    :func:`~marginface.data.formats.folder.list_image_files`), sorted; ValueError when none."""
    from marginface.data.formats.folder import list_image_files

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = [folder / name for name in list_image_files(folder)]
    if not files:
        raise ValueError(
            f"no image files under {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def load_image(path: str | os.PathLike, image_size: int, aligner=None) -> torch.Tensor:
    """One image file as a (3, S, S) tensor in [-1, 1]; a clear error when unreadable.

    ``aligner``: the file is a raw photo; detect and align its face first (ValueError naming the
    file when there is none).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        return load_tensor(path, image_size, aligner=aligner)
    except NoFaceError:
        raise ValueError(
            f"no face found in {path} (detector options: --min-face-size, --thresholds)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


class ImageFiles(Dataset):
    """Image files as a dataset of ``(image, index)``.

    An unreadable file (or, with an ``aligner``, a photo without a face) gives a zero image and
    is recorded in :attr:`failed` (index -> reason), so the caller can drop its row (embedded
    in this process: :func:`embed_files` uses no worker processes).
    """

    def __init__(self, paths: list[Path], image_size: int, aligner=None) -> None:
        self.paths = list(paths)
        self.image_size = image_size
        self.aligner = aligner
        self.failed: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            return load_tensor(self.paths[index], self.image_size, aligner=self.aligner), index
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            no_face = isinstance(exc, NoFaceError)
            self.failed[index] = NO_FACE if no_face else f"{type(exc).__name__}: {exc}"
            return torch.zeros(3, self.image_size, self.image_size), index


def embed_files(
    model: torch.nn.Module,
    paths: list[Path],
    image_size: int,
    options: EmbedOptions | None = None,
    aligner=None,
) -> tuple[np.ndarray, list[Path], dict[Path, str]]:
    """Embed image files: ``(embeddings (M, D), the M readable paths, {unreadable: reason})``.

    Unreadable files (and, with an ``aligner``, photos without a face) are left out (their rows
    dropped); ValueError when none is readable.
    """
    files = ImageFiles(paths, image_size, aligner)
    if options is not None and options.workers:
        options = options.replace(workers=0)  # the failures are recorded in this process
    emb = embed_dataset(model, files, options)
    keep = np.array([i not in files.failed for i in range(len(paths))], dtype=bool)
    failed = {files.paths[i]: why for i, why in sorted(files.failed.items())}
    if not keep.any():
        first = next(iter(failed.items()))
        raise ValueError(
            f"none of the {len(paths)} images is readable (e.g. {first[0]}: {first[1]})"
        )
    return emb[keep], [p for p, k in zip(files.paths, keep, strict=True) if k], failed
