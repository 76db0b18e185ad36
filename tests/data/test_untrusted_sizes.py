"""Sizes read from a pack are bounded by the pack itself: no huge allocation, no
OverflowError, one clear ValueError naming the file."""

import numpy as np
import pytest

from marginface.data import open_dataset
from marginface.data.formats.recordio import RecordHeader, RecordWriter, pack_payload


def pack(path, headers):
    with RecordWriter(path) as writer:
        for key, header in enumerate(headers):
            writer.write(key, pack_payload(header, b"img"))
    return path


def test_record0_declaring_two_billion_records(tmp_path):
    """The issue's 60-byte .rec whose record 0 declares 2^31 records (16 GiB before)."""
    rec = pack(tmp_path / "huge.rec", [RecordHeader(2, [2.0**31, 2.0**31 + 1])])
    assert rec.stat().st_size < 100
    with pytest.raises(ValueError, match=r"huge.rec: record 0's first identity record is 2.1"):
        open_dataset(rec)


@pytest.mark.parametrize("label", [1e9, 1e20, float("inf"), float("nan"), -1.0, 0.5])
def test_plain_pack_label_out_of_range(tmp_path, label):
    rec = pack(tmp_path / "plain.rec", [RecordHeader(0, 0.0), RecordHeader(0, label)])
    with pytest.raises(ValueError, match=r"plain.rec: the label of record 1 is .* not a whole"):
        open_dataset(rec)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e20])
def test_identity_range_out_of_range(tmp_path, bad):
    headers = [RecordHeader(2, [2.0, 3.0]), RecordHeader(0, 0.0), RecordHeader(2, [1.0, bad])]
    rec = pack(tmp_path / "ids.rec", headers)
    with pytest.raises(ValueError, match=r"ids.rec: identity record 2's image range is"):
        open_dataset(rec)


def test_valid_packs_still_open(tmp_path):
    headers = [RecordHeader(2, [3.0, 4.0]), RecordHeader(0, 0.0), RecordHeader(0, 0.0)]
    headers.append(RecordHeader(2, np.array([1.0, 3.0])))
    assert len(open_dataset(pack(tmp_path / "ok.rec", headers))) == 2
    plain = [RecordHeader(0, 1.0), RecordHeader(0, 0.0)]
    assert open_dataset(pack(tmp_path / "plain.rec", plain)).num_classes == 2


def test_index_lines_must_be_numbers(tmp_path):
    rec = pack(tmp_path / "p.rec", [RecordHeader(0, 0.0)])
    (tmp_path / "p.idx").write_text("0\t0\n1e9\t5\n")
    with pytest.raises(ValueError, match=r"p.idx line 2: expected 'key<TAB>offset'"):
        open_dataset(rec)
    (tmp_path / "p.idx").write_bytes(b"0\t0\n\xff\t1\n")
    with pytest.raises(ValueError, match=r"p.idx is not UTF-8 text: line 2"):
        open_dataset(rec)
