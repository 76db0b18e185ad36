"""A verification .bin is loaded without running anything it names (restricted unpickler)."""

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main
from marginface.data import open_pairs
from marginface.data.restricted_pickle import RefusedPickle, load_restricted
from marginface.data.verification import read_bin, write_bin


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Exploit:
    """The issue's payload: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_formats_load(tmp_path, protocol):
    """bytes, numpy uint8 arrays and numpy bools, at every protocol a .bin is found in."""
    images = [png(i) for i in range(4)]
    bins = [images[0], np.frombuffer(images[1], dtype=np.uint8), bytearray(images[2]), images[3]]
    issame = [np.bool_(True), 0]
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    read, flags = read_bin(path)
    assert read == images and flags.tolist() == [True, False]


def test_written_bin_loads(tmp_path):
    write_bin(tmp_path / "cfp.bin", [png(i) for i in range(4)], [True, False])
    assert len(open_pairs(tmp_path / "cfp.bin", image_size=8)) == 2


@pytest.mark.parametrize("where", ["top", "image", "flag"])
def test_malicious_reduce_runs_nothing(tmp_path, where):
    marker = tmp_path / "PWNED"
    data = {
        "top": Exploit(marker),
        "image": ([png(0), Exploit(marker)], [True]),
        "flag": ([png(0), png(1)], [Exploit(marker)]),
    }[where]
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=r"lfw\.bin: refused: .*(posix|os)\.system.*nothing"):
        read_bin(path)
    assert not marker.exists()


def test_cli_eval_on_malicious_bin(tmp_path, capsys, saved_model):
    marker = tmp_path / "PWNED"
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps(Exploit(marker)))
    code = main(
        ["eval", "--checkpoint", str(saved_model), "--pairs", str(tmp_path / "lfw.bin"),
         "--output", str(tmp_path / "ev"), "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("marginface eval: error: ") and "lfw.bin: refused" in err[0]
    assert not marker.exists() and not (tmp_path / "ev").exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(np.array([object()], dtype=object)),  # object arrays
        pickle.dumps(eval),  # builtins.eval
        pickle.dumps(np.dtype([("a", "u1")])),  # structured dtype
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.",
        b"\x80\x02P0\n.",  # persistent id
    ],
)
def test_everything_else_refused(payload):
    with pytest.raises(RefusedPickle):
        load_restricted(payload)


@pytest.mark.parametrize(
    "data, message",
    [
        (([None, b"x"], [True]), "image 0 is NoneType"),
        (([b"x", 7], [True]), "image 1 is int"),
        (([b"x", b"y"], [2]), "issame flag 0 is 2"),
        (([b"x", b"y"], "1"), "expected \\(list of images"),
        ((b"x",), "expected a pickle of \\(bins, issame_list\\)"),
    ],
)
def test_wrong_contents_named(tmp_path, data, message):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_bin(path)


@pytest.mark.parametrize("raw", [b"", b"\x80", b"not a pickle", b"\x80\x04K\x01" + b"0" * 9])
def test_damaged_pickle_is_a_value_error(tmp_path, raw):
    path = tmp_path / "bad.bin"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="bad.bin"):
        read_bin(path)


def test_sizes_come_from_the_file_itself():
    """A few bytes must not allocate gigabytes: a memo index of 175 million (the C unpickler
    grows an array to it), bytes(10**12), an array shape not backed by data."""
    import tracemalloc

    memo = b"\x80\x02]r\x75\x77\x74\x0a."  # LONG_BINPUT 175404405
    huge_bytes = b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R."
    shape = pickle.dumps(np.zeros(1, dtype=np.uint8), protocol=2).replace(
        b"K\x00\x85", b"J\x00\x00\x00\x7f\x85"
    )
    tracemalloc.start()
    try:
        assert load_restricted(memo) == []
        with pytest.raises(RefusedPickle, match="bytes of a int"):
            load_restricted(huge_bytes)
        assert load_restricted(shape).tolist() == [0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000
