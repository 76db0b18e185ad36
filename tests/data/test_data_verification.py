import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from marginface.data import open_dataset, open_pairs
from marginface.data.formats.verification import generate_pairs, read_bin, write_bin
from marginface.data.transforms import to_pixels


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_bin_round_trip(tmp_path):
    images = [pixels(i) for i in range(6)]
    write_bin(tmp_path / "lfw.bin", [png(p) for p in images], [True, False, True])
    pairs = open_pairs(tmp_path / "lfw.bin", image_size=(12, 10))
    assert pairs.name == "lfw" and len(pairs) == 3 and len(pairs.images) == 6
    assert pairs.issame.dtype == bool and pairs.issame.tolist() == [True, False, True]
    for i, expected in enumerate(images):
        assert (to_pixels(pairs.images[i]) == expected).all()


def py2_pickle(bins: list[bytes], issame: list[bool]) -> bytes:
    """A pickle as Python 2 wrote it: the images are 'str' (SHORT_BINSTRING / BINSTRING)."""
    out = bytearray(b"\x80\x02]q\x00(")
    for b in bins:
        out += b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + len(b).to_bytes(4, "little")
        out += b
    out += b"e]q\x01("
    out += b"".join(b"\x88" if s else b"\x89" for s in issame)
    out += b"e\x86q\x02."
    return bytes(out)


def test_old_python2_bin_needs_bytes_encoding(tmp_path):
    images = [pixels(10 + i) for i in range(4)]
    data = py2_pickle([png(p) for p in images], [False, True])
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # what a plain load of such a file does
    (tmp_path / "agedb_30.bin").write_bytes(data)
    read_images, issame = read_bin(tmp_path / "agedb_30.bin")
    assert issame.tolist() == [False, True]
    pairs = open_pairs(tmp_path / "agedb_30.bin", image_size=(12, 10))
    assert pairs.name == "agedb_30"
    assert (to_pixels(pairs.images[3]) == images[3]).all()


def test_bad_bin_files(tmp_path):
    write_bin_raw = tmp_path / "odd.bin"
    write_bin_raw.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True, False])))
    with pytest.raises(ValueError, match=r"odd\.bin: 3 images for 2 issame"):
        open_pairs(write_bin_raw)
    (tmp_path / "junk.bin").write_bytes(b"this is no pickle")
    with pytest.raises(ValueError, match=r"junk\.bin"):
        open_pairs(tmp_path / "junk.bin")
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        open_pairs(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="need 2 per pair"):
        write_bin(tmp_path / "x.bin", [b"a"], [True])


@pytest.fixture
def lfw(make_folder, tmp_path):
    root, written = make_folder({"Ann_Lee": 3, "Bo_Chan": 2, "Cy_Dee": 1}, size=(12, 10))
    text = "1\t2\nAnn_Lee\t1\t3\nBo_Chan 2 Cy_Dee 1\nBo_Chan\t1\t2\nAnn_Lee 2 Bo_Chan 1\n"
    (tmp_path / "pairs.txt").write_text(text)
    return root, written, tmp_path / "pairs.txt"


def test_pairs_txt_with_folder(lfw):
    root, written, pairs_file = lfw
    pairs = open_pairs(f"{pairs_file}::{root}", image_size=(12, 10))
    assert len(pairs) == 4 and pairs.name == root.name
    assert pairs.issame.tolist() == [True, False, True, False]
    expected = [
        written["Ann_Lee"][0], written["Ann_Lee"][2],
        written["Bo_Chan"][1], written["Cy_Dee"][0],
        written["Bo_Chan"][0], written["Bo_Chan"][1],
        written["Ann_Lee"][1], written["Bo_Chan"][0],
    ]  # fmt: skip
    for i, e in enumerate(expected):
        assert (to_pixels(pairs.images[i]) == e).all()


def test_pairs_txt_finds_the_folder_beside_it(lfw):
    root, written, pairs_file = lfw  # pairs.txt sits beside faces/, which holds the people
    pairs = open_pairs(pairs_file, image_size=(12, 10))
    assert len(pairs) == 4
    assert (to_pixels(pairs.images[3]) == written["Cy_Dee"][0]).all()


def test_pairs_txt_errors(lfw, tmp_path):
    root, _, pairs_file = lfw
    pairs_file.write_text("Ann_Lee 1 9\n")
    with pytest.raises(FileNotFoundError, match=r"pairs\.txt line 1.*Ann_Lee_0009"):
        open_pairs(f"{pairs_file}::{root}")
    pairs_file.write_text("1 300\nAnn_Lee 1\n")
    with pytest.raises(ValueError, match=r"pairs\.txt line 2: expected .* got 2 fields"):
        open_pairs(f"{pairs_file}::{root}")
    pairs_file.write_text("Ann_Lee one 2\n")
    with pytest.raises(ValueError, match="line 1: image numbers must be integers"):
        open_pairs(f"{pairs_file}::{root}")
    pairs_file.write_text("10 300\n")
    with pytest.raises(ValueError, match="holds no pairs"):
        open_pairs(pairs_file)


def check_pairs(labels, pairs, issame):
    labels = np.asarray(labels)
    assert ((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == issame).all()
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert len({tuple(sorted(p)) for p in pairs.tolist()}) == len(pairs)  # no duplicates


def test_generated_pairs_all_genuine_and_balanced():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3])  # genuine pairs: 3 + 1 + 0 + 1 = 5
    pairs, issame = generate_pairs(labels, max_pairs=100, seed=0)
    assert len(pairs) == 10 and issame.sum() == 5
    assert issame.tolist() == [True, False] * 5  # alternating: every fold balanced
    check_pairs(labels, pairs, issame)
    genuine = {tuple(p) for p in pairs[issame].tolist()}
    assert genuine == {(0, 1), (0, 2), (1, 2), (3, 4), (6, 7)}


def test_generated_pairs_are_capped_and_seeded():
    labels = np.repeat(np.arange(50), 10)  # 2250 genuine pairs
    pairs, issame = generate_pairs(labels, max_pairs=300, seed=3)
    assert len(pairs) == 600 and issame.sum() == 300
    check_pairs(labels, pairs, issame)
    again, _ = generate_pairs(labels, max_pairs=300, seed=3)
    other, _ = generate_pairs(labels, max_pairs=300, seed=4)
    assert np.array_equal(pairs, again) and not np.array_equal(pairs, other)


def test_generated_pairs_errors():
    with pytest.raises(ValueError, match="single image"):
        generate_pairs(np.arange(5))
    with pytest.raises(ValueError, match="two identities"):
        generate_pairs(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="max_pairs"):
        generate_pairs(np.array([0, 0, 1]), max_pairs=0)


def test_open_pairs_over_a_folder_and_synthetic(make_folder):
    root, _ = make_folder({"a": 3, "b": 2, "c": 2}, size=(12, 10))
    pairs = open_pairs(root, image_size=(12, 10), max_pairs=2, seed=1)
    assert len(pairs) == 4 and pairs.name == "faces"
    ds = open_dataset(root, image_size=(12, 10))
    first = int(pairs.images.indices[0])
    assert torch.equal(pairs.images[0], ds[first][0])
    synthetic = open_pairs("synthetic:6x4,first=50", image_size=16, max_pairs=1000)
    assert len(synthetic) == 2 * 36 and synthetic.images[0].shape == (3, 16, 16)
    assert synthetic.name == "synthetic"


def test_unreadable_bin_image_is_counted(tmp_path):
    from marginface.data import BadImageWarning

    images = [png(pixels(i)) for i in range(4)]
    images[1] = images[1][:30]  # truncated
    write_bin(tmp_path / "cfp_fp.bin", images, [True, False])
    pairs = open_pairs(tmp_path / "cfp_fp.bin", image_size=(12, 10))
    with pytest.warns(BadImageWarning, match=r"image 1 of .*cfp_fp\.bin"):
        image = pairs.images[1]
    assert (to_pixels(image) == pixels(2)).all()  # the next readable image
    assert pairs.images.num_bad == 1
