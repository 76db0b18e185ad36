"""Dataset formats: how :func:`marginface.data.open_dataset` turns a spec into a dataset.

A format is a name, a test of the spec (``matches(spec) -> bool``) and an opener
``open(spec, image_size, transforms, aligner) -> FaceDataset``, registered with
:func:`register_dataset_format`. ``open_dataset`` asks the formats latest-registered first, so
a format added by a project is tried before the built-in ones (``folder``, ``recordio``,
``synthetic``, registered below). Adding a format is one file: a
:class:`~marginface.data.base.FaceDataset` subclass and its registration (docs/CONTRACTS.md,
tests/data/test_add_a_format.py); every command and ``marginface train --data`` then take
its specs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from marginface.data.base import FaceDataset
from marginface.data.formats.registry import Format, FormatRegistry

Opener = Callable[..., FaceDataset]

SYNTHETIC = "synthetic:"


#: the dataset formats (:class:`~marginface.data.formats.registry.Format`: ``open(spec, image_size,
#: transforms, aligner)``)
DATASET_FORMATS = FormatRegistry("dataset format")
DatasetFormat = Format


def register_dataset_format(
    name: str, matches: Callable[[str], bool], spec_help: str = ""
) -> Callable[[Opener], Opener]:
    """Decorator: make ``opener(spec, image_size, transforms, aligner)`` open the specs for which
    ``matches(spec)`` is true (``transforms``: a :class:`~marginface.data.transforms.Transforms`
    the dataset applies to every item). ``aligner`` is None unless the caller detects faces in raw
    photos (``--detect``); a format of aligned crops refuses one."""
    return DATASET_FORMATS.register(name, matches, spec_help)


def list_dataset_formats() -> list[str]:
    """The registered format names, latest first (the order :func:`find_format` tries)."""
    return DATASET_FORMATS.names()


def find_format(spec: str) -> DatasetFormat | None:
    """The format that opens ``spec`` (the latest registered that matches), or None."""
    return DATASET_FORMATS.find(spec)


def spec_help() -> str:
    """Every registered format's spec form, for error messages."""
    return DATASET_FORMATS.spec_help()


def refuse_aligner(spec: str, aligner) -> None:
    """ValueError when face detection is asked of a format holding aligned crops."""
    if aligner is not None:
        raise ValueError(
            f"face detection applies to folders of photos, not to {spec!r} (synthetic faces "
            "and .rec packs hold aligned crops already)"
        )


def _is_pack(spec: str) -> bool:
    path = Path(spec)
    return path.suffix == ".rec" or (path.is_dir() and (path / "train.rec").is_file())


@register_dataset_format("folder", lambda spec: Path(spec).is_dir(), "a folder")
def _open_folder(spec: str, image_size, transforms, aligner) -> FaceDataset:
    from marginface.data.formats.folder import FolderDataset

    dataset = FolderDataset(Path(spec), image_size=image_size, transforms=transforms)
    dataset.aligner = aligner
    return dataset


@register_dataset_format("recordio", _is_pack, "a .rec file, a folder holding train.rec")
def _open_pack(spec: str, image_size, transforms, aligner) -> FaceDataset:
    from marginface.data.formats.recordio import RecordDataset

    refuse_aligner(spec, aligner)
    path = Path(spec)
    rec = path if path.suffix == ".rec" else path / "train.rec"
    return RecordDataset(rec, image_size=image_size, transforms=transforms)


@register_dataset_format(
    "synthetic",
    lambda spec: spec.startswith(SYNTHETIC),
    "synthetic:IDS[xIMAGES][,seed=N][,difficulty=X][,first=K]",
)
def _open_synthetic(spec: str, image_size, transforms, aligner) -> FaceDataset:
    from marginface.data.synthetic import SyntheticFaces

    refuse_aligner(spec, aligner)
    return SyntheticFaces(spec, image_size=image_size, transforms=transforms)
