import warnings

import numpy as np
import pytest
import torch

from marginface.data import TRAINING_TRANSFORMS, BadImageWarning, open_dataset
from marginface.data.transforms import to_pixels


def test_folder_reads_back_labels_names_and_exact_pixels(make_folder):
    root, written = make_folder({"bob": 2, "alice": 3, "carol": 1})
    ds = open_dataset(root, image_size=(20, 24))
    assert ds.identity_names == ["alice", "bob", "carol"]  # sorted: label = position
    assert ds.num_classes == 3 and len(ds) == 6
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2]
    expected = written["alice"] + written["bob"] + written["carol"]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 20, 24) and image.dtype == torch.float32
        assert label == ds.labels[i]
        assert (to_pixels(image) == expected[i]).all()
    assert ds.num_bad == 0


def test_folder_resizes_and_flips(make_folder):
    root, _ = make_folder({"a": 2, "b": 2})
    ds = open_dataset(root, image_size=12)
    assert ds[0][0].shape == (3, 12, 12)
    plain = open_dataset(root, image_size=12)[1][0]
    augmented = open_dataset(root, image_size=12, transforms=TRAINING_TRANSFORMS)
    torch.manual_seed(1)
    seen = {bool(torch.equal(augmented[1][0], plain)) for _ in range(30)}
    assert seen == {True, False}
    assert any(torch.equal(augmented[1][0], plain.flip(-1)) for _ in range(30))


def test_bad_image_is_counted_warned_and_replaced(make_folder):
    root, written = make_folder({"a": 3, "b": 2})
    bad = root / "a" / "a_0002.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    ds = open_dataset(root, image_size=(20, 24))
    with pytest.warns(BadImageWarning, match="a_0002.png"):
        image, label = ds[1]
    # replaced by the next readable item (a_0003)
    assert (to_pixels(image) == written["a"][2]).all() and label == 0
    assert ds.num_bad == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once only
        ds[1]
    assert ds.num_bad == 1
    # the last item of the dataset wraps around to the first
    (root / "b" / "b_0002.png").write_bytes(b"garbage")
    with pytest.warns(BadImageWarning, match="b_0002.png"):
        image, label = ds[4]
    assert (to_pixels(image) == written["a"][0]).all() and label == 0
    assert ds.num_bad == 2


def test_every_image_bad_is_an_error(make_folder):
    root, _ = make_folder({"a": 1})
    (root / "a" / "a_0001.png").write_bytes(b"garbage")
    ds = open_dataset(root, image_size=8)
    with pytest.warns(BadImageWarning), pytest.raises(ValueError, match="no readable image"):
        ds[0]


def test_empty_identity_folder_names_it(make_folder):
    root, _ = make_folder({"a": 2})
    (root / "empty_one").mkdir()
    (root / "empty_one" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="empty_one"):
        open_dataset(root)


def test_folder_without_identities_and_missing_folder(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no identity sub-folders"):
        open_dataset(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="file.txt"):
        open_dataset(tmp_path / "file.txt")


def test_index_out_of_range(make_folder):
    root, _ = make_folder({"a": 2})
    ds = open_dataset(root, image_size=8)
    with pytest.raises(IndexError):
        ds[2]
    assert torch.equal(ds[-1][0], ds[1][0])


def test_mixed_formats_sizes_and_grey(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "p").mkdir()
    grey = rng.integers(0, 256, (30, 20), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "p" / "a.pgm")
    Image.fromarray(grey).save(tmp_path / "p" / "b.BMP")
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(
        tmp_path / "p" / "c.jpg"
    )
    (tmp_path / "p" / "notes.txt").write_text("ignored")
    ds = open_dataset(tmp_path, image_size=16)
    assert len(ds) == 3 and [p.name for p in ds.paths] == ["a.pgm", "b.BMP", "c.jpg"]
    for i in range(3):
        assert ds[i][0].shape == (3, 16, 16)
    exact = open_dataset(tmp_path, image_size=(30, 20))[0][0]
    assert torch.equal(exact[0], exact[1]) and torch.equal(exact[1], exact[2])  # grey -> RGB
    assert (to_pixels(exact)[..., 0] == grey).all()
