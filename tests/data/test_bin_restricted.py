"""A verification .bin is loaded without running anything it names (restricted unpickler)."""

import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main
from marginface.data import open_pairs
from marginface.data.formats.restricted_pickle import DamagedPickle, RefusedPickle, load_restricted
from marginface.data.formats.verification import read_bin, write_bin


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


def numpy1_names(data: bytes) -> bytes:
    """The same pickle as numpy 1 writes it (``numpy.core`` for ``numpy._core``): the frames
    are dropped (they are optional) so that the shorter names need no new frame lengths."""
    ops = list(pickletools.genops(data))
    out = b"".join(
        data[pos : ops[i + 1][2] if i + 1 < len(ops) else pos + 1]
        for i, (op, _, pos) in enumerate(ops)
        if op.name != "FRAME"
    )
    for module in ("multiarray", "numeric"):
        new, old = f"numpy._core.{module}".encode(), f"numpy.core.{module}".encode()
        out = out.replace(new + b"\n", old + b"\n")  # GLOBAL
        out = out.replace(bytes([0x8C, len(new)]) + new, bytes([0x8C, len(old)]) + old)
    return out


def python2_bin(images: list[bytes], flags: list[bool]) -> bytes:
    """A .bin as Python 2's cPickle writes it at protocol 2 (InsightFace's own files): images
    as ``str`` (SHORT_BINSTRING / BINSTRING), memo indices from 1, and one image as a numpy
    array of that time (dtype arguments 0 and 1, ``str`` typecode and state)."""

    def string(data: bytes) -> bytes:
        if len(data) < 256:
            return b"U" + bytes([len(data)]) + data
        return b"T" + len(data).to_bytes(4, "little") + data

    out = b"\x80\x02]q\x01("
    for image in images[:-1]:
        out += string(image)
    last = images[-1]
    out += (
        b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85q\x04U\x01b"
        b"\x87q\x05Rq\x06(K\x01" + b"J" + len(last).to_bytes(4, "little") + b"\x85q\x07"
        b"cnumpy\ndtype\nq\x08U\x02u1K\x00K\x01\x87Rq\x09(K\x03U\x01|NNNJ\xff\xff\xff\xff"
        b"J\xff\xff\xff\xffK\x00tq\x0ab\x89" + string(last) + b"tq\x0bb"
    )
    out += b"e]q\x0c(" + b"".join(b"\x88" if f else b"\x89" for f in flags) + b"e\x86q\x0d."
    return out


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("numpy_major", [1, 2])
def test_real_formats_load(tmp_path, protocol, numpy_major):
    """bytes, bytearrays, numpy uint8 arrays (read-only and writable), numpy bools and bool
    arrays, at every protocol, as numpy 2 (this one) and numpy 1 write them."""
    images = [png(i) for i in range(4)]
    bins = [images[0], np.frombuffer(images[1], dtype=np.uint8), bytearray(images[2]),
            np.array(bytearray(images[3]), dtype=np.uint8)]  # fmt: skip
    for issame in ([np.bool_(True), 0], np.array([True, False])):
        data = pickle.dumps((bins, issame), protocol=protocol)
        if numpy_major == 1:
            data = numpy1_names(data)
            assert b"numpy._core" not in data
        path = tmp_path / "lfw.bin"
        path.write_bytes(data)
        read, flags = read_bin(path)
        assert read == images and flags.tolist() == [True, False]


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "bins").glob("*.bin")),
                         ids=lambda p: p.stem)  # fmt: skip
def test_files_written_by_numpy1_load(path):
    """Files written by numpy 1.26.4 (tests/data/bins/, protocols 0 and 2 to 5)."""
    read, flags = read_bin(path)
    assert read == [png(i) for i in range(4)]
    assert flags.tolist() == ([False, True] if "array" in path.stem else [True, False])


def test_python2_files_load(tmp_path):
    images = [png(0), png(1), b"x" * 300, png(3)]
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(python2_bin(images, [True, False]))
    read, flags = read_bin(path)
    assert read == images and flags.tolist() == [True, False]


def test_numpy_values_built_as_numpy_builds_them():
    """Arrays of every allowed dtype, byte order and layout come out equal to numpy's own."""
    arrays = [
        np.arange(6, dtype=d).reshape(2, 3)
        for d in ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
    ]
    arrays += [np.arange(6, dtype=">i4").reshape(2, 3), np.asfortranarray(np.eye(3)),
               np.zeros((0,), "f4"), np.array(3.5), np.array([True, False])]  # fmt: skip
    scalars = [np.int64(-3), np.float32(0.25), np.bool_(False), np.complex64(1j)]
    for protocol in (0, 2, 4, 5):
        for value in arrays:
            got = load_restricted(pickle.dumps(value, protocol=protocol))
            assert got.dtype == value.dtype and got.shape == value.shape
            assert np.array_equal(got, value)
        for value in scalars:
            got = load_restricted(pickle.dumps(value, protocol=protocol))
            assert type(got) is type(value) and got == value


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
        pickle.dumps(np.array([object()], dtype=object)),
        pickle.dumps(np.zeros(2, dtype="U3")),  # unicode dtype
        pickle.dumps(np.zeros(2, dtype="V4")),  # void dtype  # object arrays
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
        (([None, b"x"], [True]), "image 0 is None"),
        (([b"x", 7], [True]), "image 1 is int 7"),
        (([b"x", b"y"], [2]), "issame flag 0 is int 2"),
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

    memo = b"\x80\x02]r\x75\x77\x74\x0a."  # LONG_BINPUT 175404917
    huge_bytes = b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R."
    shape = pickle.dumps(np.zeros(1, dtype=np.uint8), protocol=2).replace(
        b"K\x01\x85", b"J\x00\x00\x00\x7f\x85"
    )
    tracemalloc.start()
    try:
        with pytest.raises(RefusedPickle, match="memo index 175404917 with 0 stored"):
            load_restricted(memo)
        with pytest.raises(RefusedPickle, match=r"bytes\(2130706432\)"):
            load_restricted(huge_bytes)
        with pytest.raises(RefusedPickle, match=r"shape \(2130706432,\) .* from 1 bytes"):
            load_restricted(shape)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x80\x02}.", "opcode EMPTY_DICT"),
        (b"\x80\x02G?\xf0\x00\x00\x00\x00\x00\x00.", "opcode BINFLOAT"),
        (b"\x80\x05\x97.", "opcode NEXT_BUFFER"),
        (b"\x80\x02cnumpy\nndarray\n)R.", "a call of numpy.ndarray"),
        (b"\x80\x02cnumpy\nndarray\n.", "numpy.ndarray as a value"),
        (b"\x80\x02]N\x85b.", "a state \\(BUILD\\) for list"),
        (b"\x80\x02c__builtin__\nbytes\n\x85.", "damaged|bytes as a value"),
    ],
)
def test_opcodes_and_calls_outside_a_bin_refused(payload, message):
    with pytest.raises((RefusedPickle, DamagedPickle), match=message):
        load_restricted(payload)


def test_declared_lengths_checked_before_reading():
    """Each length-prefixed opcode declaring 2^40 (or 2^31) bytes in a file of 14: damaged,
    at once, with nothing allocated."""
    import tracemalloc

    tracemalloc.start()
    try:
        for code in (b"\x96", b"\x8e", b"\x8d", b"\x95"):  # BYTEARRAY8 BINBYTES8 BINUNICODE8 FRAME
            for n in (2**40, 2**31, 2**64 - 1):
                with pytest.raises(DamagedPickle, match=f"declares {n} bytes, 3 are left"):
                    load_restricted(b"\x80\x05" + code + n.to_bytes(8, "little") + b"xy.")
        for code in (b"B", b"X", b"T"):  # BINBYTES BINUNICODE BINSTRING
            with pytest.raises(DamagedPickle, match="declares 2147483647 bytes, 1 are left"):
                load_restricted(b"\x80\x02" + code + b"\xff\xff\xff\x7f.")
        with pytest.raises(DamagedPickle, match="LONG4 at byte 2 declares 2147483647"):
            load_restricted(b"\x80\x02\x8b\xff\xff\xff\x7f.")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_pack_pairs_output_loads(tmp_path):
    """What ``marginface pack --pairs`` writes (write_bin) reads back unchanged."""
    images = [png(i) for i in range(6)]
    write_bin(tmp_path / "mine.bin", images, [True, False, True])
    read, flags = read_bin(tmp_path / "mine.bin")
    assert read == images and flags.tolist() == [True, False, True]


def test_refusals_are_short_whatever_the_file_holds():
    """An error line never repeats what the file holds: a call with 100,000 arguments, a
    dtype state holding a megabyte."""
    many = b"\x80\x02c_codecs\nencode\n(" + b"N" * 100_000 + b"tR."
    state = pickle.dumps(np.dtype("u1"), protocol=2).replace(
        b"K\x03X\x01\x00\x00\x00|", b"B\x00\x00\x10\x00" + b"x" * 2**20 + b"X\x01\x00\x00\x00|"
    )
    for payload in (many, state):
        with pytest.raises(RefusedPickle) as info:
            load_restricted(payload)
        assert len(str(info.value)) < 500
