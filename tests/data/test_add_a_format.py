"""Worked example (docs/CONTRACTS.md, "Add a dataset format"): a format is one file, a
:class:`~marginface.data.base.FaceDataset` subclass and its registration; then
``open_dataset``, ``open_pairs`` (pairs generated from it) and every command's dataset spec
(``marginface train --data``, ``eval --pairs``, ``embed``) take its specs.

The dataset sets ``labels`` (np.int64, one per item, known without decoding) and
``identity_names``, and implements ``load(index)`` (a (3, H, W) float32 tensor in [-1, 1], or
an exception for an unreadable image: the base class then uses the next item and counts it)
and ``describe(index)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main
from marginface.data import formats, open_dataset, open_pairs, register_dataset_format
from marginface.data.base import FaceDataset
from marginface.data.transforms import NO_TRANSFORMS, Transforms, resize, to_tensor


# --- the whole of "npz_faces.py" -----------------------------------------------------------
class NpzFaces(FaceDataset):
    """Faces stored in one ``.npz``: ``images`` (N, H, W, 3) uint8, ``labels`` (N,) ints,
    optional ``names`` (one per identity)."""

    def __init__(self, path: str, image_size=112, transforms: Transforms = NO_TRANSFORMS) -> None:
        super().__init__(image_size, transforms)
        self.path = path
        with np.load(path, allow_pickle=False) as data:
            self.pixels = data["images"]
            self.labels = data["labels"].astype(np.int64)
            count = int(self.labels.max()) + 1
            names = data["names"] if "names" in data else [f"id{k}" for k in range(count)]
        self.identity_names = [str(n) for n in names]

    def load(self, index: int):
        return self.transforms(
            to_tensor(resize(Image.fromarray(self.pixels[index]), self.image_size))
        )

    def describe(self, index: int) -> str:
        return f"{self.path} image {index}"


def open_npz(spec: str, image_size, transforms, aligner) -> FaceDataset:
    formats.refuse_aligner(spec, aligner)  # aligned crops: no face detection
    return NpzFaces(spec, image_size=image_size, transforms=transforms)


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def registered(monkeypatch):
    """``@register_dataset_format("npz", ...)`` on the opener, undone after the test (the
    registry is process-wide; a project registers at import of its module instead)."""
    monkeypatch.setattr(formats.DATASET_FORMATS, "formats", dict(formats.DATASET_FORMATS.formats))
    register_dataset_format("npz", lambda spec: spec.endswith(".npz"), "a faces .npz")(open_npz)


@pytest.fixture
def faces_npz(tmp_path):
    """8 identities x 4 images of 20x20: each identity one colour, plus noise."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 4)
    colours = rng.integers(0, 256, (8, 1, 1, 3))
    noise = rng.integers(-20, 21, (32, 20, 20, 3))
    images = np.clip(colours[labels] + noise, 0, 255).astype(np.uint8)
    path = tmp_path / "faces.npz"
    np.savez(path, images=images, labels=labels)
    return path


def test_a_registered_format_opens_and_trains(registered, faces_npz, tmp_path, capsys):
    dataset = open_dataset(str(faces_npz), image_size=16)
    image, label = dataset[5]
    assert isinstance(dataset, NpzFaces) and image.shape == (3, 16, 16) and label == 1
    assert dataset.num_classes == 8 and len(dataset) == 32
    pairs = open_pairs(str(faces_npz), image_size=16, max_pairs=10)
    assert len(pairs) == 20 and pairs.issame.sum() == 10
    assert formats.list_dataset_formats()[0] == "npz"
    code = main(["train", "--data", str(faces_npz), "--backbone", "small_cnn", "--image-size",
                 "16", "--embedding-size", "8", "--batch-size", "8", "--max-steps", "1",
                 "--output", str(tmp_path / "run"), "--quiet", "--no-tensorboard", "--device",
                 "cpu", "--summary-images", "0"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.pt").is_file()


def test_unknown_specs_name_every_format(registered, tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a faces .npz, synthetic:IDS"):
        open_dataset(str(tmp_path / "nowhere"))
