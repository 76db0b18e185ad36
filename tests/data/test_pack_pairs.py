"""``marginface pack --pairs pairs.txt::FOLDER --output X.bin``: InsightFace's .bin format."""

import pickle

import numpy as np
import pytest
import torch

from marginface.cli import main
from marginface.data import open_pairs
from marginface.data.formats.verification import read_pairs_txt


def test_pack_pairs_writes_an_insightface_bin(make_folder, tmp_path, capsys):
    root, _ = make_folder({"ann": 3, "bob": 2, "cy": 1})
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2 2\nann 1 2\nann 1 cy 1\nbob 1 2\nbob 2 ann 3\n")
    out = tmp_path / "sets" / "mine.bin"
    argv = ["pack", "--pairs", f"{pairs}::{root}", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    assert "4 pairs (2 genuine, 2 impostor)" in capsys.readouterr().out
    # the layout InsightFace's load_bin reads: pickle of (bins, issame_list), bytes unchanged
    with open(out, "rb") as f:
        bins, issame_list = pickle.load(f, encoding="bytes")
    paths, issame = read_pairs_txt(pairs, root)
    assert [bytes(b) for b in bins] == [p.read_bytes() for p in paths]
    assert issame_list == [True, False, True, False] == issame.tolist()
    # and marginface reads the same pixels from the .bin as from the list
    from_bin, from_list = open_pairs(out, image_size=20), open_pairs(f"{pairs}::{root}", 20)
    for i in range(8):
        assert torch.equal(from_bin.images[i], from_list.images[i])
    assert np.array_equal(from_bin.issame, from_list.issame)


def test_pack_pairs_errors(make_folder, tmp_path, capsys):
    root, _ = make_folder({"ann": 2})
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("ann 1 2\n")
    (root / "ann" / "ann_0002.png").write_bytes(b"broken")
    argv = ["pack", "--pairs", f"{pairs}::{root}", "--output", str(tmp_path / "x.bin")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot store" in err and "ann_0002.png" in err
    assert not (tmp_path / "x.bin").exists()
    assert main(["pack", "--pairs", str(pairs), "--output", str(tmp_path / "x.rec")]) == 2
    assert "must be a .bin" in capsys.readouterr().err
    assert main(["pack", "--pairs", str(pairs)]) == 2
    with pytest.raises(SystemExit):
        main(["pack", "--pairs"])
