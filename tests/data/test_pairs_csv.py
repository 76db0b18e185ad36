"""CSV pair lists (``a,b,same[,identity]``) as pair sets: read, checked, opened by open_pairs."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.data import open_pairs
from marginface.data.formats.verification import read_pairs_csv


@pytest.fixture
def folder(make_folder):
    root, _ = make_folder({"ann": 2, "bob": 2}, size=(16, 16))
    return root


def test_csv_pairs_open(folder):
    (folder / "pairs.csv").write_text(
        "a,b,same,identity,note\n"
        "ann/ann_0001.png,ann/ann_0002.png,1,ann,x\n"
        "ann/ann_0001.png,bob/bob_0001.png,false,ann,\n"
        "\n"
        "bob/bob_0001.png,bob/bob_0002.png,Same,bob,\n"
    )
    paths, issame, groups = read_pairs_csv(folder / "pairs.csv")
    assert [p.name for p in paths[:2]] == ["ann_0001.png", "ann_0002.png"]
    assert issame.tolist() == [True, False, True] and groups.tolist() == ["ann", "ann", "bob"]
    pairs = open_pairs(folder / "pairs.csv", image_size=16)
    assert (len(pairs), pairs.name, len(pairs.images)) == (3, "pairs", 6)
    assert pairs.images[0].shape == (3, 16, 16)
    # the folder given, and no identity column: no groups
    (folder.parent / "p.csv").write_text("same,a,b\n0,ann/ann_0001.png,bob/bob_0002.png\n")
    pairs = open_pairs(f"{folder.parent / 'p.csv'}::{folder}", image_size=16)
    assert pairs.issame.tolist() == [False] and pairs.groups is None
    np.testing.assert_array_equal(pairs.images[1], open_pairs(folder / "pairs.csv", 16).images[5])


@pytest.mark.parametrize(
    "text, message",
    [
        ("x,y,same\n", "the first row must name the columns a, b, same"),
        ("a,b,same\nann/ann_0001.png,ann/ann_0002.png,maybe\n", "line 2: same must be 1/0"),
        ("a,b,same\nann/ann_0001.png,ann/ann_0009.png,1\n", "line 2: no image"),
        ("a,b,same\n../x.png,ann/ann_0002.png,1\n", "line 2: '../x.png'"),
        ("a,b,same\nann/ann_0001.png,1\n", "line 2: 2 fields, the header names 3"),
        ("a,b,same\n", "holds no pairs"),
    ],
)
def test_bad_csv_is_named(folder, text, message):
    (folder / "bad.csv").write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match="bad.csv") as info:
        open_pairs(folder / "bad.csv", image_size=16)
    assert message in str(info.value)
