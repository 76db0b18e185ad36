import struct

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from marginface.data import BadImageWarning, open_dataset
from marginface.data.formats.pack import pack_folder
from marginface.data.formats.recordio import (
    MAGIC,
    RecordHeader,
    RecordReader,
    RecordWriter,
    pack_payload,
    unpack_payload,
    write_plain_pack,
)
from marginface.data.transforms import to_pixels


def insightface_read(rec_path, idx_path, key):
    """Independent reader in the way MXNet's MXIndexedRecordIO + recordio.unpack do it."""
    offsets = dict(tuple(map(int, line.split("\t"))) for line in open(idx_path))
    with open(rec_path, "rb") as f:
        f.seek(offsets[key])
        magic, word = struct.unpack("<II", f.read(8))
        assert magic == 0xCED7230A and word >> 29 == 0
        payload = f.read(word & ((1 << 29) - 1))
    flag, label, id1, id2 = struct.unpack("<IfQQ", payload[:24])
    if flag > 0:
        label = np.frombuffer(payload[24 : 24 + 4 * flag], dtype=np.float32)
        return flag, label, payload[24 + 4 * flag :]
    return flag, label, payload[24:]


def test_header_round_trip():
    header, image = unpack_payload(pack_payload(RecordHeader(0, 7.0, 3, 4), b"abc"))
    assert (header.flag, header.label, header.id, header.id2, image) == (0, 7.0, 3, 4, b"abc")
    header, image = unpack_payload(pack_payload(RecordHeader(2, [5, 9]), b"xy"))
    assert header.flag == 2 and header.label.tolist() == [5.0, 9.0] and image == b"xy"
    with pytest.raises(ValueError, match="shorter than its header"):
        unpack_payload(b"short")


@pytest.fixture
def packed(make_folder, tmp_path):
    root, written = make_folder({"b": 2, "a": 3, "c": 1})
    result = pack_folder(root, tmp_path / "pack" / "train.rec", progress=False)
    return result, written


def test_pack_reads_back_exactly(packed):
    result, written = packed
    assert (result.images, result.identities, result.bad) == (6, 3, [])
    ds = open_dataset(result.rec_path, image_size=(20, 24))
    assert ds.identity_names == ["a", "b", "c"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert ds.identity_ranges.tolist() == [[1, 4], [4, 6], [6, 7]]
    expected = written["a"] + written["b"] + written["c"]
    for i in range(6):
        image, label = ds[i]
        assert (to_pixels(image) == expected[i]).all() and label == ds.labels[i]
    # the folder holding train.rec opens the same pack
    same = open_dataset(result.rec_path.parent, image_size=(20, 24))
    assert torch.equal(same[5][0], ds[5][0])
    assert (result.rec_path.parent / "property").read_text() == "3,20,24\n"


def test_pack_layout_is_insightface(packed):
    result, written = packed
    rec, idx = result.rec_path, result.idx_path
    flag, label, _ = insightface_read(rec, idx, 0)
    assert flag == 2 and label.tolist() == [7.0, 10.0]  # images 1..6, identities 7..9
    ranges = [insightface_read(rec, idx, k)[1].tolist() for k in (7, 8, 9)]
    assert ranges == [[1.0, 4.0], [4.0, 6.0], [6.0, 7.0]]
    for key, lab in zip(range(1, 7), [0, 0, 0, 1, 1, 2], strict=True):
        flag, label, image = insightface_read(rec, idx, key)
        assert flag == 0 and label == lab and image[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_pack_uses_record_labels(tmp_path, make_folder):
    root, written = make_folder({"x": 2, "y": 2})
    files = sorted(root.rglob("*.png"))
    labels = [3, 0, 1, 3]  # not grouped, label per record
    items = [(lab, f.read_bytes()) for lab, f in zip(labels, files, strict=True)]
    assert write_plain_pack(tmp_path / "plain.rec", items) == 4
    ds = open_dataset(tmp_path / "plain.rec", image_size=(20, 24))
    assert ds.labels.tolist() == labels and ds.num_classes == 4
    assert ds.identity_ranges is None
    assert (to_pixels(ds[2][0]) == np.asarray(written["y"][0])).all()
    assert ds[2][1] == 1


def test_array_labels_use_first_value(tmp_path):
    with RecordWriter(tmp_path / "arr.rec") as writer:
        writer.write(0, pack_payload(RecordHeader(2, [4.0, 1.0]), b""))
    reader = RecordReader(tmp_path / "arr.rec")
    # flag 2 in record 0 but labels that are not a valid identity layout: a clear error
    with pytest.raises(ValueError, match="first identity record is 4, not a whole number in 0..1"):
        open_dataset(tmp_path / "arr.rec")
    assert reader.read_header(0).label.tolist() == [4.0, 1.0]


def test_payload_holding_the_magic_is_split_and_joined(tmp_path):
    magic = struct.pack("<I", MAGIC)
    payload = b"abcd" + magic + b"efgh" + magic + magic + b"ij"
    with RecordWriter(tmp_path / "m.rec") as writer:
        writer.write(0, payload)
        writer.write(1, b"plain")
    raw = (tmp_path / "m.rec").read_bytes()
    flags = []
    pos = 0
    while pos < len(raw):
        _, word = struct.unpack("<II", raw[pos : pos + 8])
        flags.append(word >> 29)
        pos += 8 + ((word & ((1 << 29) - 1)) + 3) // 4 * 4
    assert flags == [1, 2, 2, 3, 0]
    reader = RecordReader(tmp_path / "m.rec")
    assert reader.read(0) == payload and reader.read(1) == b"plain"


def test_missing_idx_names_it(packed):
    result, _ = packed
    result.idx_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"train\.idx"):
        open_dataset(result.rec_path)


def test_wrong_magic_names_the_file(tmp_path):
    (tmp_path / "bad.rec").write_bytes(b"\x00" * 64)
    (tmp_path / "bad.idx").write_text("0\t0\n1\t32\n")
    with pytest.raises(ValueError, match=r"bad\.rec.*magic 0xced7230a"):
        open_dataset(tmp_path / "bad.rec")


def test_bad_idx_line_and_missing_rec(tmp_path, packed):
    result, _ = packed
    result.idx_path.write_text("0\t0\nnot a line\n")
    with pytest.raises(ValueError, match=r"train\.idx line 2"):
        open_dataset(result.rec_path)
    with pytest.raises(FileNotFoundError, match="nothing.rec"):
        open_dataset(tmp_path / "nothing.rec")


def test_corrupt_record_is_counted_and_replaced(packed):
    result, written = packed
    rec = result.rec_path
    reader = RecordReader(rec)
    data = bytearray(rec.read_bytes())
    # corrupt the image bytes of record 2 (item 1): keep the header, break the PNG signature
    start = reader.index[2] + 8 + 24
    data[start : start + 8] = b"garbage!"
    rec.write_bytes(bytes(data))
    ds = open_dataset(rec, image_size=(20, 24))
    with pytest.warns(BadImageWarning, match="record 2 of"):
        image, label = ds[1]
    assert (to_pixels(image) == written["a"][2]).all() and label == 0
    assert ds.num_bad == 1


def test_truncated_insightface_pack_is_a_clear_error(packed):
    result, _ = packed
    data = result.rec_path.read_bytes()
    result.rec_path.write_bytes(data[: RecordReader(result.rec_path).index[7] + 10])
    with pytest.raises(ValueError, match=r"train\.rec: identity record 7 is unreadable"):
        open_dataset(result.rec_path)


def test_truncated_plain_pack_records_are_counted(tmp_path, make_folder):
    root, written = make_folder({"x": 2, "y": 2})
    files = sorted(root.rglob("*.png"))
    items = [(i // 2, f.read_bytes()) for i, f in enumerate(files)]
    rec = tmp_path / "plain.rec"
    write_plain_pack(rec, items)
    offsets = RecordReader(rec).index
    # cut inside the image of record 3: its header survives, its image does not
    full = rec.read_bytes()
    rec.write_bytes(full[: offsets[3] + 8 + 40])
    ds = open_dataset(rec, image_size=(20, 24))
    assert ds.labels.tolist() == [0, 0, 1, 1]
    with pytest.warns(BadImageWarning, match="record 3 of"):
        image, label = ds[3]
    assert label == 0 and (to_pixels(image) == written["x"][0]).all()
    assert ds.num_bad == 1
    # cut inside the header of record 3: left out at opening, counted
    rec.write_bytes(full[: offsets[3] + 8 + 10])
    with pytest.warns(BadImageWarning, match="record 3 of .* unreadable header"):
        ds = open_dataset(rec, image_size=(20, 24))
    assert ds.labels.tolist() == [0, 0, 1] and ds.num_bad == 1


def test_names_file_must_match(packed):
    result, _ = packed
    result.rec_path.with_suffix(".names").write_text("only\n")
    with pytest.raises(ValueError, match="1 identity names for 3"):
        open_dataset(result.rec_path)


def test_dataloader_workers_give_the_same_items(packed):
    result, _ = packed
    ds = open_dataset(result.rec_path, image_size=(20, 24))
    ds[0]  # opens the file in the parent first: workers must not share that handle
    single = [(x.clone(), y.clone()) for x, y in DataLoader(ds, batch_size=2, num_workers=0)]
    multi = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(single) == len(multi) == 3
    for (x0, y0), (x1, y1) in zip(single, multi, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_pack_dataset_pickles_without_its_file_handle(packed):
    import pickle

    result, _ = packed
    ds = open_dataset(result.rec_path, image_size=(20, 24))
    first = ds[0][0]  # the file is open now
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker gets
    assert clone.reader._file is None
    assert torch.equal(clone[0][0], first) and clone.labels.tolist() == ds.labels.tolist()
