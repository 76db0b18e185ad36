"""InsightFace / MXNet RecordIO packs (``.rec`` + ``.idx``), read and written without MXNet.

Layout (see ``shared/DESIGN.md``):

- ``.idx``: one ``key<TAB>offset`` line per record.
- a record in ``.rec``: uint32 magic ``0xced7230a``; uint32 whose low 29 bits are the length
  and top 3 bits a continuation flag (0 whole, 1 first, 2 middle, 3 last part: a payload is split
  where it holds the magic at a 4-byte boundary, and the magic is dropped at the cut); the
  payload padded with zeros to a multiple of 4 bytes.
- a payload: the header struct ``<IfQQ`` (flag, label, id, id2); if flag > 0, ``flag`` float32
  labels follow; then the encoded image.
- InsightFace packs: record 0 has flag 2 and labels ``(first identity record, end)``; records
  ``1 .. first - 1`` are images; each identity record ``first .. end - 1`` holds the
  ``(start, end)`` image-record range of one identity. Plain packs have a label per record.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from marginface.data.base import BadImageWarning, FaceDataset
from marginface.data.transforms import load_tensor

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1


@dataclass
class RecordHeader:
    """The header of a payload: ``flag``, ``label`` (float, or float32 array when flag > 0)."""

    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0


def pack_payload(header: RecordHeader, image: bytes = b"") -> bytes:
    """Header (+ label array when ``label`` is a sequence) + encoded image, as MXNet's pack."""
    label = header.label
    if isinstance(label, Iterable):
        labels = np.asarray(label, dtype=np.float32)
        head = _HEADER.pack(len(labels), 0.0, header.id, header.id2) + labels.tobytes()
    else:
        head = _HEADER.pack(0, float(label), header.id, header.id2)
    return head + bytes(image)


def unpack_payload(payload: bytes) -> tuple[RecordHeader, bytes]:
    """Inverse of :func:`pack_payload`: ``(header, encoded image)``."""
    if len(payload) < _HEADER.size:
        raise ValueError(f"record payload of {len(payload)} bytes is shorter than its header")
    flag, label, id1, id2 = _HEADER.unpack_from(payload)
    start = _HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if len(payload) < end:
            raise ValueError(
                f"record payload of {len(payload)} bytes is too short for {flag} labels"
            )
        labels = np.frombuffer(payload, dtype=np.float32, count=flag, offset=start).copy()
        return RecordHeader(flag, labels, id1, id2), payload[end:]
    return RecordHeader(flag, label, id1, id2), payload[start:]


def read_index(idx_path: str | os.PathLike) -> dict[int, int]:
    """``.idx`` -> ``{key: offset}``; a missing file or a bad line is an error naming it."""
    idx_path = Path(idx_path)
    if not idx_path.is_file():
        raise FileNotFoundError(
            f"RecordIO index {idx_path} is missing (a .rec pack needs its .idx beside it)"
        )
    index: dict[int, int] = {}
    with open(idx_path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                raise ValueError(
                    f"{idx_path} line {number}: expected 'key<TAB>offset', got {line.strip()!r}"
                ) from None
            index[key] = offset
    if not index:
        raise ValueError(f"RecordIO index {idx_path} is empty")
    return index


class RecordReader:
    """Random access to the records of a ``.rec`` through its ``.idx``.

    The file is opened lazily, once per process (the pid is checked on each read), so one
    reader can be shared with DataLoader workers: each worker opens its own handle.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = (
            Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        )
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"RecordIO file {self.rec_path} does not exist")
        self.index = read_index(self.idx_path)
        self.keys = sorted(self.index)
        self._file = None
        self._pid = -1
        self.file_size = self.rec_path.stat().st_size
        self.check_magic(self.keys[0])

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")  # noqa: SIM115 - held for the reader's life
            self._pid = os.getpid()
        return self._file

    def check_magic(self, key: int) -> None:
        """Raise ValueError naming the file if record ``key`` does not start with the magic."""
        offset = self.index[key]
        f = self._handle()
        f.seek(offset)
        head = f.read(4)
        if head != _MAGIC_BYTES:
            found = f"0x{struct.unpack('<I', head)[0]:08x}" if len(head) == 4 else repr(head)
            raise ValueError(
                f"{self.rec_path} is not a RecordIO pack: record {key} at offset {offset} starts "
                f"with {found}, not the magic 0x{MAGIC:08x}"
            )

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (continuation parts joined)."""
        if key not in self.index:
            raise KeyError(f"record {key} is not in {self.idx_path}")
        f = self._handle()
        f.seek(self.index[key])
        parts: list[bytes] = []
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise EOFError(f"{self.rec_path}: record {key} is truncated (end of file)")
            magic, word = struct.unpack("<II", head)
            if magic != MAGIC:
                raise ValueError(f"{self.rec_path}: record {key}: bad magic 0x{magic:08x}")
            length, cflag = word & _LENGTH_MASK, word >> 29
            data = f.read(length)
            if len(data) < length:
                raise EOFError(
                    f"{self.rec_path}: record {key} is truncated ({len(data)} of {length} bytes)"
                )
            f.read((-length) % 4)
            parts.append(data)
            if cflag in (0, 3):
                break
        return _MAGIC_BYTES.join(parts)

    def read_header(self, key: int) -> RecordHeader:
        """Only the header of record ``key`` (no image bytes read)."""
        f = self._handle()
        f.seek(self.index[key])
        head = f.read(8 + _HEADER.size)
        if len(head) < 8 + _HEADER.size or head[:4] != _MAGIC_BYTES:
            return unpack_payload(self.read(key))[0]
        flag = _HEADER.unpack_from(head, 8)[0]
        if flag > 0:
            return unpack_payload(self.read(key))[0]
        return unpack_payload(head[8:])[0]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, -1
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class RecordWriter:
    """Write records and their ``.idx`` (MXNet's ``MXIndexedRecordIO`` layout)."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = (
            Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        )
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115
        self.index: dict[int, int] = {}

    def write(self, key: int, payload: bytes) -> None:
        """Append record ``key`` (split at aligned magic words, as MXNet's writer does)."""
        if key in self.index:
            raise ValueError(f"record {key} written twice to {self.rec_path}")
        self.index[key] = self._rec.tell()
        self._write_at_end(payload)

    def _write_at_end(self, payload: bytes) -> None:
        cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i : i + 4] == _MAGIC_BYTES]
        if not cuts:
            self._write_part(payload, 0)
            return
        start = 0
        for n, cut in enumerate(cuts):
            self._write_part(payload[start:cut], 1 if n == 0 else 2)
            start = cut + 4
        self._write_part(payload[start:], 3)

    def _write_part(self, data: bytes, cflag: int) -> None:
        if len(data) > _LENGTH_MASK:
            raise ValueError(f"record part of {len(data)} bytes exceeds the 2^29 - 1 limit")
        self._rec.write(struct.pack("<II", MAGIC, (cflag << 29) | len(data)))
        self._rec.write(data)
        self._rec.write(b"\0" * ((-len(data)) % 4))

    def overwrite(self, key: int, payload: bytes) -> None:
        """Rewrite record ``key`` in place with a payload of the same length (record 0)."""
        end = self._rec.tell()
        self._rec.seek(self.index[key])
        self._rec.write(struct.pack("<II", MAGIC, len(payload)))
        self._rec.write(payload)
        self._rec.seek(end)

    def close(self) -> None:
        if self._rec.closed:
            return
        self._rec.close()
        with open(self.idx_path, "w") as f:
            for key in sorted(self.index):
                f.write(f"{key}\t{self.index[key]}\n")

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------
def _scalar_label(label: float | np.ndarray) -> int:
    if isinstance(label, np.ndarray):
        return int(label[0])
    return int(label)


def names_path(rec_path: str | os.PathLike) -> Path:
    """Where a pack keeps its identity names, one per line: ``X.rec`` -> ``X.names``."""
    return Path(rec_path).with_suffix(".names")


class RecordDataset(FaceDataset):
    """A RecordIO pack as a face dataset.

    With InsightFace's record 0 the items are records ``1 .. first - 1`` and labels come from
    the identity ranges; otherwise every record is an item and labels come from the record
    headers (headers only are read, never images). ``identity_names`` come from ``X.names``
    when present, otherwise they are the label numbers.
    """

    def __init__(
        self,
        rec_path: str | os.PathLike,
        image_size: int | tuple[int, int] = 112,
        augment: bool = False,
        idx_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(image_size, augment)
        self.reader = RecordReader(rec_path, idx_path)
        self._skipped = 0
        self.identity_ranges: np.ndarray | None = None
        header0 = self.reader.read_header(0) if 0 in self.reader.index else None
        if header0 is not None and header0.flag > 0:
            self._from_identity_records(header0)
        else:
            self._from_record_labels()
        names = names_path(self.reader.rec_path)
        num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        if self.identity_ranges is not None:
            num_classes = len(self.identity_ranges)
        if names.is_file():
            listed = names.read_text().splitlines()
            if len(listed) != num_classes:
                raise ValueError(
                    f"{names} lists {len(listed)} identity names for {num_classes} identities "
                    f"in {self.reader.rec_path}"
                )
            self.identity_names = listed
        else:
            self.identity_names = [str(i) for i in range(num_classes)]

    def _from_identity_records(self, header0: RecordHeader) -> None:
        rec = self.reader.rec_path
        labels0 = np.atleast_1d(header0.label)
        if len(labels0) < 2:
            raise ValueError(f"{rec}: record 0 has flag {header0.flag} but {len(labels0)} labels")
        first, end = int(labels0[0]), int(labels0[1])
        if not 1 <= first <= end:
            raise ValueError(f"{rec}: record 0 gives identity records {first}..{end}, not valid")
        ranges = []
        for key in range(first, end):
            if key not in self.reader.index:
                raise ValueError(f"{rec}: identity record {key} (of {first}..{end - 1}) is missing")
            try:
                lab = np.atleast_1d(self.reader.read_header(key).label)
            except (OSError, ValueError, EOFError) as exc:
                raise ValueError(
                    f"{rec}: identity record {key} is unreadable (truncated file?): {exc}"
                ) from None
            start, stop = (int(lab[0]), int(lab[1])) if len(lab) > 1 else (0, 0)
            if not (1 <= start <= stop <= first):
                raise ValueError(
                    f"{rec}: identity record {key} gives image range {start}..{stop}, outside "
                    f"the image records 1..{first - 1}"
                )
            ranges.append((start, stop))
        self.identity_ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        self.keys = np.arange(1, first, dtype=np.int64)
        labels = np.full(first - 1, -1, dtype=np.int64)
        for label, (start, stop) in enumerate(ranges):
            labels[start - 1 : stop - 1] = label
        if (labels < 0).any():
            missing = int((labels < 0).sum())
            raise ValueError(f"{rec}: {missing} image records belong to no identity range")
        self.labels = labels

    def _from_record_labels(self) -> None:
        keys: list[int] = []
        labels: list[int] = []
        show = len(self.reader.keys) > 200_000
        for key in tqdm(self.reader.keys, desc="reading labels", disable=not show):
            try:
                label = _scalar_label(self.reader.read_header(key).label)
            except (OSError, ValueError, EOFError) as exc:
                self._skipped += 1
                warnings.warn(
                    f"record {key} of {self.reader.rec_path} has an unreadable header ({exc}); "
                    "left out",
                    BadImageWarning,
                    stacklevel=3,
                )
                continue
            if label < 0:
                raise ValueError(f"{self.reader.rec_path}: record {key} has label {label} < 0")
            keys.append(key)
            labels.append(label)
        if not keys:
            raise ValueError(f"{self.reader.rec_path}: no readable record")
        self.keys = np.asarray(keys, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    @property
    def num_bad(self) -> int:
        """Unreadable images met so far (records left out at opening included)."""
        return len(self._bad) + self._skipped

    def load(self, index: int) -> torch.Tensor:
        _, image = unpack_payload(self.reader.read(int(self.keys[index])))
        return load_tensor(image, self.image_size, self.augment)

    def describe(self, index: int) -> str:
        return f"record {int(self.keys[index])} of {self.reader.rec_path}"


# ---------------------------------------------------------------------------------------------
# writing packs
# ---------------------------------------------------------------------------------------------
def write_pack(
    rec_path: str | os.PathLike,
    items: Iterable[tuple[int, bytes]],
    num_classes: int,
    identity_names: Sequence[str] | None = None,
    image_shape: tuple[int, int] | None = None,
) -> int:
    """Write ``(label, encoded image)`` items, grouped by label in increasing order, as an
    InsightFace pack (streamed: items are not held in memory).

    Images become records ``1 .. N``; identity records ``N + 1 .. N + C`` hold each label's
    ``(start, end)`` image-record range; record 0 (flag 2) holds ``(N + 1, N + C + 1)``. Also
    writes ``X.idx``, ``X.names`` (if names are given) and a ``property`` file (``C,H,W``, as
    InsightFace's packs have) beside the pack when ``image_shape`` is given.
    Returns N, the number of images written.
    """
    rec_path = Path(rec_path)
    if identity_names is not None and len(identity_names) != num_classes:
        raise ValueError(f"{len(identity_names)} identity names for {num_classes} identities")
    counts = np.zeros(num_classes, dtype=np.int64)
    with RecordWriter(rec_path) as writer:
        placeholder = RecordHeader(2, np.zeros(2, dtype=np.float32))
        writer.write(0, pack_payload(placeholder))
        key, last = 0, 0
        for label, image in items:
            if not 0 <= label < num_classes:
                raise ValueError(f"label {label} outside 0..{num_classes - 1}")
            if label < last:
                raise ValueError(f"items must come grouped by label: {label} after {last}")
            key += 1
            last = label
            counts[label] += 1
            writer.write(key, pack_payload(RecordHeader(0, float(label), key, 0), image))
        n = key
        start = 1
        for label in range(num_classes):
            stop = start + int(counts[label])
            header = RecordHeader(2, np.array([start, stop], dtype=np.float32), n + 1 + label, 0)
            writer.write(n + 1 + label, pack_payload(header))
            start = stop
        header0 = RecordHeader(2, np.array([n + 1, n + 1 + num_classes], dtype=np.float32))
        writer.overwrite(0, pack_payload(header0))
    if identity_names is not None:
        names_path(rec_path).write_text("".join(f"{name}\n" for name in identity_names))
    if image_shape is not None:
        (rec_path.parent / "property").write_text(
            f"{num_classes},{image_shape[0]},{image_shape[1]}\n"
        )
    return n


def write_plain_pack(rec_path: str | os.PathLike, items: Iterable[tuple[int, bytes]]) -> int:
    """Write a plain pack: records ``0 .. N - 1``, each with its own label, no identity records."""
    n = 0
    with RecordWriter(rec_path) as writer:
        for key, (label, image) in enumerate(items):
            writer.write(key, pack_payload(RecordHeader(0, float(label), key, 0), image))
            n += 1
    return n
