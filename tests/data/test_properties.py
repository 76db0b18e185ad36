"""Property tests (hypothesis) of the readers of untrusted files: what is written reads back
exactly, and what cannot be read raises only the documented errors."""

import io
import pickle

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from marginface.data.detection.align import read_landmarks
from marginface.data.formats.recordio import RecordHeader, RecordReader, RecordWriter, pack_payload
from marginface.data.formats.verification import read_bin
from marginface.data.transforms import UnreadableImage, decode_image
from marginface.files import resolve_inside

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
MAGIC = b"\x0a\x23\xd7\xce"
# payloads rich in the RecordIO magic (a payload is split wherever it holds it, 4-aligned)
payloads = st.lists(st.sampled_from([MAGIC, b"\x00", b"ab", b"\xce", MAGIC * 2]), max_size=12)


@SETTINGS
@given(records=st.lists(st.tuples(st.integers(0, 9), payloads.map(b"".join)), max_size=8))
def test_recordio_round_trip(tmp_path, records):
    rec = tmp_path / "p.rec"
    with RecordWriter(rec) as writer:
        for key, (label, image) in enumerate(records):
            writer.write(key, pack_payload(RecordHeader(0, float(label), key), image))
    if not records:
        return
    reader = RecordReader(rec)
    for key, (label, image) in enumerate(records):
        payload = reader.read(key)
        assert payload == pack_payload(RecordHeader(0, float(label), key), image)
    reader.close()


@SETTINGS
@given(parts=st.lists(st.sampled_from(["..", ".", "a", "b", "", "/", "c/..", "~"]), max_size=6))
def test_resolve_inside_never_leaves_the_root(tmp_path, parts):
    (tmp_path / "root" / "a").mkdir(parents=True, exist_ok=True)
    root = (tmp_path / "root").resolve()
    try:
        target = resolve_inside(root, "/".join(parts), "test")
    except ValueError:
        return
    assert target == root or root in target.parents


@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_are_unreadable(data):
    try:
        image = decode_image(data)
    except UnreadableImage:
        return
    assert image.mode == "RGB"


@SETTINGS
@given(
    fmt=st.sampled_from(["PNG", "BMP", "GIF", "TIFF", "PPM"]),
    cut=st.integers(0, 400),
    flip=st.integers(0, 399),
)
def test_damaged_images_are_unreadable_never_worse(fmt, cut, flip):
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5), (10, 200, 30)).save(buffer, format=fmt)
    data = bytearray(buffer.getvalue()[:cut])
    if flip < len(data):
        data[flip] ^= 0xFF
    try:
        decode_image(bytes(data))
    except UnreadableImage:
        pass


@SETTINGS
@given(
    images=st.lists(st.binary(max_size=40), min_size=1, max_size=6).map(
        lambda b: b if len(b) % 2 == 0 else [*b, b""]
    ),
    protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
    as_numpy=st.booleans(),
)
def test_any_legitimate_bin_reads_back(tmp_path, images, protocol, as_numpy):
    issame = [bool(len(b) % 2) for b in images[::2]]
    bins = [np.frombuffer(b, dtype=np.uint8) for b in images] if as_numpy else images
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    read, flags = read_bin(path)
    assert read == [bytes(b) for b in images] and flags.tolist() == issame


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_]{1,8}/[A-Za-z0-9_]{1,8}\.png", fullmatch=True),
            st.lists(st.floats(-1e6, 1e6), min_size=10, max_size=10),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda r: r[0],
    )
)
def test_landmarks_round_trip(tmp_path, rows):
    path = tmp_path / "marks.txt"
    path.write_text("".join(f"{p} {' '.join(repr(v) for v in vals)}\n" for p, vals in rows))
    read = read_landmarks(path)
    assert list(read) == [p for p, _ in rows]
    for p, vals in rows:
        assert read[p].reshape(-1).tolist() == vals
