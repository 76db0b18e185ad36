"""Worked example (docs/CONTRACTS.md, "Add a pair-set format"): a pair-set format is an opener
registered with a test of the spec; then ``open_pairs`` and ``marginface eval --pairs`` take
its specs. The built-in formats (``.bin``, ``pairs.txt``, ``.csv``, ``FILE::FOLDER``) are
registered the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from marginface.cli import main
from marginface.data import open_pairs, register_pair_format
from marginface.data.formats import pairs as pair_formats
from marginface.data.formats.verification import PairSet


# --- the whole of "npz_pairs.py" -------------------------------------------------------------
class Faces(Dataset):
    """(N, H, W, 3) uint8 faces as (3, H, W) float32 tensors in [-1, 1]."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = torch.from_numpy(self.pixels[index]).permute(2, 0, 1).float()
        return (image / 255 - 0.5) / 0.5


def open_npz_pairs(spec: str, image_size, aligner) -> PairSet:
    """``images`` (2N, H, W, 3) uint8, already ``image_size``; ``issame`` (N,) bools."""
    with np.load(spec, allow_pickle=False) as data:
        return PairSet(Faces(data["images"]), data["issame"], "npz-pairs")


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def registered(monkeypatch):
    """``@register_pair_format`` on the opener, undone after the test (the registry is
    process-wide; a project registers at import of its module instead)."""
    monkeypatch.setattr(
        pair_formats.PAIR_FORMATS, "formats", dict(pair_formats.PAIR_FORMATS.formats)
    )
    register_pair_format("npz-pairs", lambda spec: spec.endswith(".pairs.npz"))(open_npz_pairs)


@pytest.fixture
def pairs_npz(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 16, 16, 3)).astype(np.uint8)
    path = tmp_path / "faces.pairs.npz"
    np.savez(path, images=images, issame=np.arange(12) % 2 == 0)
    return path


def test_a_registered_pair_format_opens_and_evaluates(
    registered, pairs_npz, saved_model, tmp_path, capsys
):
    pairs = open_pairs(str(pairs_npz), image_size=16)
    assert pairs.name == "npz-pairs" and len(pairs) == 12 and pairs.images[3].shape == (3, 16, 16)
    assert pair_formats.list_pair_formats()[0] == "npz-pairs"
    code = main(["eval", "--checkpoint", str(saved_model), "--pairs", str(pairs_npz),
                 "--output", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "npz-pairs" in (tmp_path / "out" / "report.md").read_text()


def test_the_built_in_formats_and_the_dataset_specs():
    cases = {
        "lfw.bin": "bin",
        "a/pairs.txt": "pairs-txt",
        "pairs.txt::faces": "pairs-txt",
        "list.bin::faces": "pairs-txt",
        "pairs.csv": "pairs-csv",
        "pairs.csv::faces": "pairs-csv",
    }
    for spec, name in cases.items():
        assert pair_formats.find_pair_format(spec).name == name, spec
    for spec in ("synthetic:20x4", "faces", "train.rec"):
        assert pair_formats.find_pair_format(spec) is None  # pairs generated from the dataset
    with pytest.raises(ValueError, match="already registered"):
        register_pair_format("bin", lambda spec: False)(open_npz_pairs)
