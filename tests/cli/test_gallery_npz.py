"""A gallery ``.npz`` is read without trusting its headers: the issue's file declaring
2^40 x 4 rows is "not a gallery" before anything is allocated, and nothing is unpickled."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from marginface.cli import main
from marginface.data.formats.npz import read_npz


def npy(shape, dtype="<f4", data=b"", fortran=False) -> bytes:
    """A .npy member whose header declares ``shape`` (whatever ``data`` holds)."""
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def gallery(path, embeddings: bytes, names: bytes | None = None, deflate=False):
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("embeddings.npy", embeddings)
        if names is not None:
            archive.writestr("names.npy", names)
    return path


NAMES = npy((1,), "<U1", "a".encode("utf-32-le"))
HOSTILE = {
    "2^40 rows": (npy((2**40, 4), data=b"\0" * 16), "declares a float32 array of shape "
                  "(1099511627776, 4) (16 TiB) but holds 16 bytes"),
    "empty 2^40 rows": (npy((2**40, 0)), "an empty array of shape (1099511627776, 0)"),
    "negative shape": (npy((-1, 4)), "declares the shape (-1, 4)"),
    "object array": (npy((1,), "|O", b"\0" * 8), "holds Python objects"),
    "no names": (npy((1, 4), data=b"\0" * 16), "it has no 'names' array"),
    "not a zip": (b"not a zip file", "File is not a zip file"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_gallery_is_not_a_gallery(tmp_path, case):
    member, message = HOSTILE[case]
    path = tmp_path / "g.npz"
    if case == "not a zip":
        path.write_bytes(member)
    else:
        gallery(path, member, None if case == "no names" else NAMES)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="g.npz is not a gallery") as info:
            read_npz(path, ["embeddings", "names"], what="gallery")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message in str(info.value)
    assert peak < 1_000_000


def test_declared_size_beyond_the_file(tmp_path):
    """A member whose zip entry declares more bytes than deflate could have compressed."""
    path = gallery(tmp_path / "g.npz", npy((4, 4), data=b"\0" * 64), NAMES, deflate=True)
    data = bytearray(path.read_bytes())
    # the central directory's uncompressed size of the first member: 2^31
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (2**31).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"g.npz is not a gallery: .*'embeddings' declares 2 GiB"):
        read_npz(path, ["embeddings", "names"], what="gallery")


def test_real_gallery_reads(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "g.npz", embeddings=emb, names=np.array(["a", "bb", "c"]))
        out = read_npz(tmp_path / "g.npz", ["embeddings", "names"])
        assert np.array_equal(out["embeddings"], emb) and out["names"].tolist() == ["a", "bb", "c"]


def test_cli_search_names_the_gallery(tmp_path, capsys, saved_model):
    from PIL import Image

    path = gallery(tmp_path / "g.npz", HOSTILE["2^40 rows"][0], NAMES)
    Image.new("RGB", (16, 16)).save(tmp_path / "q.png")  # a query that exists
    code = main(["search", str(tmp_path / "q.png"), "--gallery", str(path),
                 "--checkpoint", str(saved_model)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"marginface search: error: {path} is not a gallery")
    assert "(1099511627776, 4) (16 TiB)" in err[0]
