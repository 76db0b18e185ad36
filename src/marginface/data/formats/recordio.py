"""InsightFace / MXNet RecordIO packs (``.rec`` + ``.idx``), read and written without MXNet.

Layout (MXNet's ``recordio`` format, as InsightFace's ``train.rec`` packs use it; this list is
the whole of what the reader and the writer rely on, and docs/data.md#recordio-packs-rec--idx
describes the packs from the user's side):

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

import contextlib
import math
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
from marginface.data.transforms import NO_TRANSFORMS, Transforms, load_tensor
from marginface.files import atomic_paths, atomic_write_text, open_regular, read_text

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
    for number, line in enumerate(read_text(idx_path, "RecordIO index").split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 2 or not all(f.isdigit() and f.isascii() for f in fields):
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise ValueError(
                f"{idx_path} line {number}: expected 'key<TAB>offset' (two whole numbers >= 0), "
                f"got {line.strip()[:80]!r}"
            ) from None
        if key >= 2**63 or offset >= 2**63:
            raise ValueError(f"{idx_path} line {number}: a key or offset beyond 2^63 - 1")
        if key in index:
            raise ValueError(f"{idx_path} line {number}: record {key} is listed twice")
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
            self._file = open_regular(self.rec_path, "RecordIO file")  # held for the reader's life
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
    """Write records and their ``.idx`` (MXNet's ``MXIndexedRecordIO`` layout).

    The ``.rec``, the ``.idx`` and (given ``names``) the ``.names`` file are written under
    temporary names and renamed into place together by :meth:`close`; leaving the ``with``
    block on an exception (or calling :meth:`abort`) removes them, so a failed write (a full
    disk, a file-size limit, a bad item) leaves an existing pack as it was.
    """

    def __init__(
        self,
        rec_path: str | os.PathLike,
        idx_path: str | os.PathLike | None = None,
        names: Sequence[str] | None = None,
    ):
        self.rec_path = Path(rec_path)
        self.idx_path = (
            Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        )
        targets = [self.rec_path, self.idx_path]
        if names is not None:
            targets.append(names_path(self.rec_path))
            self._names_text = "".join(f"{check_identity_name(n, self.rec_path)}\n" for n in names)
        self._files = atomic_paths(*targets)
        self._temps = self._files.__enter__()
        self._rec = open(self._temps[0], "wb")  # noqa: SIM115 - closed by close() / abort()
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
        """Finish: write the index (and names) and rename all files into place."""
        if self._rec.closed:
            return
        try:
            self._rec.close()
            with open(self._temps[1], "w") as f:
                for key in sorted(self.index):
                    f.write(f"{key}\t{self.index[key]}\n")
            if len(self._temps) > 2:
                self._temps[2].write_text(self._names_text, encoding="utf-8")
        except BaseException as exc:
            self.abort(exc)
            raise
        self._files.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop everything written; the files at the target paths stay as they were."""
        if not self._rec.closed:
            self._rec.close()
        error = exc if exc is not None else RuntimeError("pack writing aborted")
        with contextlib.suppress(BaseException):
            self._files.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.close()
        elif not self._rec.closed:
            self.abort(exc)


# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------
def _whole_number(value: float, limit: int, what: str) -> int:
    """``value`` (a float from a record header) as an int in ``0 .. limit``; ValueError naming
    ``what`` when it is NaN, infinite, fractional or out of that range (so no file can ask for
    more memory than its own size justifies)."""
    number = float(value)
    if not math.isfinite(number) or number != int(number) or not 0 <= number <= limit:
        raise ValueError(f"{what} is {number:g}, not a whole number in 0..{limit}")
    return int(number)


def _scalar_label(label: float | np.ndarray) -> float:
    if isinstance(label, np.ndarray):
        if len(label) == 0:
            raise ValueError("the header has a label array of length 0")
        return float(label[0])
    return float(label)


def names_path(rec_path: str | os.PathLike) -> Path:
    """Where a pack keeps its identity names, one per line: ``X.rec`` -> ``X.names``."""
    return Path(rec_path).with_suffix(".names")


def check_identity_name(name: str, rec_path: Path) -> str:
    """An identity name the names file (one name a line) can hold; ValueError otherwise."""
    if not name or any(c in name for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        raise ValueError(
            f"identity name {name!r} for {rec_path} is empty or holds a line break, which the "
            f"names file {names_path(rec_path).name} (one name a line) cannot hold; rename it"
        )
    return name


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
        transforms: Transforms = NO_TRANSFORMS,
        idx_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(image_size, transforms)
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
            listed = read_text(names, "identity names file").rstrip("\n").split("\n")
            listed = [n.rstrip("\r") for n in listed] if any(listed) else []
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
        records = len(self.reader.index)  # every image and identity is one indexed record
        first = _whole_number(labels0[0], records, f"{rec}: record 0's first identity record")
        end = _whole_number(labels0[1], records, f"{rec}: record 0's end of identity records")
        if not 1 <= first <= end:
            raise ValueError(f"{rec}: record 0 gives identity records {first}..{end}, not valid")
        missing = next((k for k in range(1, first) if k not in self.reader.index), None)
        if missing is not None:
            raise ValueError(
                f"{rec}: image record {missing} (of 1..{first - 1}) is missing from "
                f"{self.reader.idx_path}"
            )
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
            where = f"{rec}: identity record {key}'s image range"
            start, stop = (
                (_whole_number(lab[0], first, where), _whole_number(lab[1], first, where))
                if len(lab) > 1
                else (0, 0)
            )
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
        # labels are 0 .. C - 1 with an image each: no label can reach the number of records
        limit = len(self.reader.keys) - 1
        for key in tqdm(self.reader.keys, desc="reading labels", disable=not show):
            try:
                header = self.reader.read_header(key)
            except (OSError, ValueError, EOFError) as exc:
                self._skipped += 1
                warnings.warn(
                    f"record {key} of {self.reader.rec_path} has an unreadable header ({exc}); "
                    "left out",
                    BadImageWarning,
                    stacklevel=3,
                )
                continue
            where = f"{self.reader.rec_path}: the label of record {key}"
            label = _whole_number(_scalar_label(header.label), limit, where)
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
        return load_tensor(image, self.image_size, self.transforms)

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
    with RecordWriter(rec_path, names=identity_names) as writer:
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
    if image_shape is not None:
        write_property(rec_path, num_classes, image_shape)
    return n


def write_property(
    rec_path: str | os.PathLike, num_classes: int, image_shape: tuple[int, int]
) -> None:
    """The ``property`` file InsightFace keeps beside its packs: ``C,H,W``."""
    text = f"{num_classes},{image_shape[0]},{image_shape[1]}\n"
    atomic_write_text(Path(rec_path).parent / "property", text)


def write_plain_pack(rec_path: str | os.PathLike, items: Iterable[tuple[int, bytes]]) -> int:
    """Write a plain pack: records ``0 .. N - 1``, each with its own label, no identity records."""
    n = 0
    with RecordWriter(rec_path) as writer:
        for key, (label, image) in enumerate(items):
            writer.write(key, pack_payload(RecordHeader(0, float(label), key, 0), image))
            n += 1
    return n
