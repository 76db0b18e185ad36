"""Face data in: folders, InsightFace RecordIO packs, verification pairs, alignment, and an
embedded synthetic identity dataset.

Two entry points::

    from marginface.data import open_dataset, open_pairs
    train = open_dataset("synthetic:1000x20", image_size=112, transforms=TRAINING_TRANSFORMS)
    pairs = open_pairs("synthetic:200x10,first=100000", image_size=112)

Every item is ``(image, label)``: float32 (3, H, W) RGB in [-1, 1] and an int.
"""

from __future__ import annotations

import os
from pathlib import Path

from marginface.data.base import BadImageWarning, FaceDataset
from marginface.data.formats import (
    SYNTHETIC,
    find_format,
    find_pair_format,
    list_dataset_formats,
    list_pair_formats,
    refuse_aligner,
    register_dataset_format,
    register_pair_format,
    spec_help,
)
from marginface.data.formats.verification import PairSet
from marginface.data.transforms import NO_TRANSFORMS, TRAINING_TRANSFORMS, Transforms


def open_dataset(
    spec: str | os.PathLike,
    image_size: int | tuple[int, int] = 112,
    transforms: Transforms = NO_TRANSFORMS,
    aligner=None,
) -> FaceDataset:
    """Open a face dataset (a map-style torch Dataset of ``(image, label)``).

    Args:
        spec: a folder with one sub-folder per identity; a ``.rec`` file (its ``.idx`` beside
            it); a folder holding ``train.rec`` / ``train.idx``;
            ``synthetic:IDS[xIMAGES][,seed=N][,difficulty=X][,first=K]``; or a spec of a
            format registered with :func:`register_dataset_format` (``marginface.data.formats``).
        image_size: output size, an int or ``(H, W)``; images are resized to it.
        transforms: applied to every item (:data:`TRAINING_TRANSFORMS`: a random horizontal
            flip; default none).
        aligner: for a folder of raw photos, a :class:`marginface.data.detection.detect.FaceAligner`
            that detects and aligns each face first.

    The dataset has ``num_classes``, ``identity_names``, ``labels`` (np.int64 per item, known
    without decoding) and ``num_bad``.
    """
    text = str(spec)
    fmt = find_format(text)
    if fmt is None:
        refuse_aligner(text, aligner)
        if not Path(text).exists():
            raise FileNotFoundError(f"dataset {text!r} not found: expected {spec_help()}")
        raise ValueError(f"dataset {text!r} is a file of no known format; expected {spec_help()}")
    return fmt.open(text, image_size=image_size, transforms=transforms, aligner=aligner)


def open_pairs(
    spec: str | os.PathLike,
    image_size: int | tuple[int, int] = 112,
    max_pairs: int = 3000,
    seed: int = 0,
    aligner=None,
) -> PairSet:
    """Open a verification pair set.

    Args:
        spec: a ``.bin`` (lfw.bin, cfp_fp.bin, agedb_30.bin ...); a ``pairs.txt`` (images in the
            folder beside it, or ``pairs.txt::FOLDER``); a ``.csv`` of columns ``a,b,same``
            (``[,identity]``; paths relative to its folder or ``FILE.csv::FOLDER``,
            :func:`marginface.data.formats.verification.read_pairs_csv`); the spec of a format
            registered with :func:`register_pair_format` (``marginface.data.formats.pairs``);
            or any :func:`open_dataset` spec, from which pairs are generated: every genuine
            pair up to ``max_pairs`` (seeded sample beyond), the same number of impostor pairs,
            alternating genuine / impostor.
        image_size: output size of the images.
        max_pairs: cap on generated genuine pairs (so at most 2 * max_pairs pairs); files
            (``.bin``, ``pairs.txt``) are always used whole, as their protocols define.
        seed: seed of the generated pairs.
        aligner: images are raw photos: a :class:`marginface.data.detection.detect.FaceAligner`
            detects and aligns each face first (``.bin`` files, pair lists and folders).

    Returns a :class:`PairSet`: ``images`` (Dataset of 2N tensors, pair k = images 2k, 2k + 1),
    ``issame`` (bool, N), ``name``.
    """
    from marginface.data.formats import verification

    text = str(spec)
    fmt = find_pair_format(text)
    if fmt is not None:
        return fmt.open(text, image_size=image_size, aligner=aligner)
    path = Path(text)
    dataset = open_dataset(text, image_size=image_size, aligner=aligner)
    if text.startswith(SYNTHETIC):
        name = "synthetic"
    else:
        name = (path.parent.name if path.name == "train.rec" else path.stem) or "pairs"
    return verification.pairs_from_dataset(dataset, name, max_pairs=max_pairs, seed=seed)


__all__ = [
    "BadImageWarning",
    "FaceDataset",
    "NO_TRANSFORMS",
    "PairSet",
    "TRAINING_TRANSFORMS",
    "Transforms",
    "list_dataset_formats",
    "list_pair_formats",
    "open_dataset",
    "open_pairs",
    "register_dataset_format",
    "register_pair_format",
]
