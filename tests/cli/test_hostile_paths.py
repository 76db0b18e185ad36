"""Issue 22, paths from data files: an image list (gallery / probe) goes through the same
check as every other data file (resolve_inside)."""

import pytest

from marginface.evaluation.evaluate import _read_list


def test_image_list_entry_leading_outside_is_refused(tmp_path):
    root = tmp_path / "faces"
    (root / "ann").mkdir(parents=True)
    image = root / "ann" / "1.png"
    image.write_bytes(b"x")
    (tmp_path / "victim.png").write_bytes(b"x")
    index_of = {image.resolve(): 0}
    listing = tmp_path / "gallery.txt"
    listing.write_text("ann/1.png\n")
    assert _read_list(listing, root, index_of) == [0]
    listing.write_text(f"{image}\n")  # an absolute path to an image of the dataset
    assert _read_list(listing, root, index_of) == [0]
    listing.write_text("ann/1.png\n../victim.png\n")
    with pytest.raises(ValueError, match="gallery.txt line 2: '../victim.png' leads outside"):
        _read_list(listing, root, index_of)
    listing.write_text(f"{tmp_path / 'victim.png'}\n")
    with pytest.raises(ValueError, match="is not an image of"):
        _read_list(listing, root, index_of)


def test_a_fifo_named_as_a_bin_pair_set_is_refused_without_blocking(tmp_path):
    import os

    from marginface.data import open_pairs

    fifo = tmp_path / "pairs.bin"
    os.mkfifo(fifo)  # nothing will ever write it: reading would block forever
    with pytest.raises(OSError, match="only regular files are read"):
        open_pairs(str(fifo), image_size=16)
