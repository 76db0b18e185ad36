"""Write datasets out as images: contact sheets and folder datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from marginface.data.base import FaceDataset
from marginface.data.transforms import save_image, to_pixels
from marginface.files import atomic_write_text, resolve_inside


def contact_sheet(
    dataset: FaceDataset, identities: int = 8, images: int = 10, gap: int = 2
) -> Image.Image:
    """A grid of the first ``images`` items of each of the first ``identities`` identities
    (rows = identities, columns = images), ``gap`` pixels of white between cells.

    Identities with fewer images leave their remaining cells white.
    """
    if identities < 1 or images < 1:
        raise ValueError(f"need at least one identity and one image, got {identities}x{images}")
    labels = dataset.labels
    rows = min(identities, dataset.num_classes)
    height, width = dataset.image_size
    sheet = Image.new(
        "RGB", (images * width + (images + 1) * gap, rows * height + (rows + 1) * gap), "white"
    )
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(rows))
    ends = np.searchsorted(labels[order], np.arange(rows), side="right")
    for row in range(rows):
        for col, item in enumerate(order[starts[row] : ends[row]][:images]):
            tile = Image.fromarray(to_pixels(dataset[int(item)][0]))
            sheet.paste(tile, (gap + col * (width + gap), gap + row * (height + gap)))
    return sheet


def write_image_folder(
    dataset: FaceDataset,
    output: str | os.PathLike,
    extension: str = ".png",
    progress: bool = True,
) -> int:
    """Write every item as ``OUTPUT/<identity name>/<index>.<ext>`` (a folder dataset).

    PNG keeps exact pixels; ``.jpg`` is written at quality 95. For the synthetic dataset also
    writes ``OUTPUT/landmarks.txt`` (each image's relative path and its 5 landmarks, the format
    ``marginface align`` reads). Returns the number of images.
    """
    from marginface.data.synthetic import SyntheticFaces

    output = Path(output)
    ext = extension if extension.startswith(".") else f".{extension}"
    options = {"quality": 95} if ext.lower() in (".jpg", ".jpeg") else {}
    names = dataset.identity_names
    for label in range(dataset.num_classes):
        folder = resolve_inside(output, names[label], f"identity name of label {label}")
        folder.mkdir(parents=True, exist_ok=True)
    synthetic = isinstance(dataset, SyntheticFaces)
    lines: list[str] = []
    for index in tqdm(range(len(dataset)), desc="writing", unit="img", disable=not progress):
        label = int(dataset.labels[index])
        relative = f"{names[label]}/{index:07d}{ext}"
        if synthetic:
            picture, marks = dataset.render(index, with_landmarks=True)
            numbers = " ".join(f"{v:.2f}" for v in marks.reshape(-1))
            lines.append(f"{relative} {numbers}\n")
        else:
            picture = Image.fromarray(to_pixels(dataset[index][0]))
        save_image(picture, output / relative, **options)
    if synthetic:
        atomic_write_text(output / "landmarks.txt", "".join(lines))
    return len(dataset)
