"""Turn a folder dataset into an InsightFace RecordIO pack (``marginface pack``)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from marginface.data.base import BadImageWarning
from marginface.data.formats.folder import scan_folder
from marginface.data.formats.recordio import (
    check_identity_name,
    names_path,
    write_pack,
    write_property,
)
from marginface.data.transforms import decode_image
from marginface.files import check_writable_file, read_bytes


@dataclass
class PackResult:
    """What :func:`pack_folder` wrote."""

    rec_path: Path
    idx_path: Path
    images: int
    identities: int
    bad: list[Path]


def pack_folder(
    folder: str | os.PathLike, rec_path: str | os.PathLike, progress: bool = True
) -> PackResult:
    """Pack ``folder`` (``ROOT/<identity>/<image>``) into ``rec_path`` + ``.idx`` (+ ``.names``,
    ``property``).

    Image bytes are stored as they are (JPEG stays JPEG, PNG stays PNG: exact pixels). Every image
    is decoded once first; an unreadable one is left out with a warning naming it.
    """
    rec_path = Path(rec_path)
    if rec_path.suffix != ".rec":
        raise ValueError(f"output {rec_path} must end in .rec (the index goes to .idx beside it)")
    for path in (rec_path, rec_path.with_suffix(".idx"), names_path(rec_path)):
        check_writable_file(path, "pack output")
    names, paths, labels = scan_folder(folder)
    for name in names:
        check_identity_name(name, rec_path)
    bad: list[Path] = []
    shape: list[tuple[int, int]] = []

    def items() -> Iterator[tuple[int, bytes]]:
        for path, label in tqdm(
            list(zip(paths, labels, strict=True)), desc="packing", unit="img", disable=not progress
        ):
            try:
                data = read_bytes(path, "image")
                image = decode_image(data)
            except OSError as exc:  # transforms.UnreadableImage
                bad.append(path)
                warnings.warn(
                    f"unreadable image {path} left out of the pack ({exc})",
                    BadImageWarning,
                    stacklevel=2,
                )
                continue
            if not shape:
                shape.append((image.height, image.width))
            yield int(label), data

    # the property file needs the first image's shape, known only once an image is read
    n = write_pack(rec_path, items(), len(names), identity_names=names)
    if shape:
        write_property(rec_path, len(names), shape[0])
    return PackResult(rec_path, rec_path.with_suffix(".idx"), n, len(names), bad)
