"""Verification pair sets: InsightFace ``.bin`` files, LFW ``pairs.txt``, CSV pair lists,
generated pairs.

A :class:`PairSet` holds ``images`` (a Dataset of 2N image tensors; pair k is images 2k and
2k + 1), ``issame`` (bool ndarray, N), ``name`` and, where the set knows them, ``groups``: the
identity of each pair (its first face's), for a bootstrap over identities. ``len(pairs) == N``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from marginface.data.base import FaceDataset, ImagesOnly
from marginface.data.formats.restricted_pickle import DamagedPickle, RefusedPickle, load_restricted
from marginface.data.transforms import IMAGE_EXTENSIONS, load_tensor
from marginface.files import (
    atomic_write,
    check_writable_file,
    read_bytes,
    read_text,
    resolve_inside,
)


@dataclass
class PairSet:
    """Images of N pairs (2N images: pair k is ``images[2k]``, ``images[2k + 1]``) and flags;
    ``groups`` (N,): each pair's identity (its first face's), None where the set does not say
    (a ``.bin``)."""

    images: Dataset
    issame: np.ndarray
    name: str
    groups: np.ndarray | None = None
    #: what the pairs file's header says: ``(folds, genuine pairs per fold)`` (LFW's
    #: ``10 300``: 10 folds of 300 genuine then 300 impostor pairs); None without a header
    header: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.issame = np.asarray(self.issame, dtype=bool)
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if self.groups.shape != self.issame.shape:
                raise ValueError(
                    f"pair set {self.name!r}: {len(self.groups)} identities for "
                    f"{len(self.issame)} pairs"
                )
        if len(self.images) != 2 * len(self.issame):
            raise ValueError(
                f"pair set {self.name!r}: {len(self.images)} images for {len(self.issame)} "
                f"pairs (expected {2 * len(self.issame)})"
            )

    def __len__(self) -> int:
        return len(self.issame)

    def __repr__(self) -> str:
        genuine = int(self.issame.sum())
        return f"PairSet({self.name!r}, pairs={len(self)}, genuine={genuine})"


class EncodedImages(FaceDataset):
    """A list of encoded images (bytes) or image paths, decoded on access; label = position."""

    def __init__(
        self,
        sources: Sequence[bytes | str | os.PathLike],
        image_size: int | tuple[int, int] = 112,
        origin: str = "images",
    ) -> None:
        super().__init__(image_size)
        self.sources = list(sources)
        self.origin = origin
        self.labels = np.arange(len(self.sources), dtype=np.int64)
        self.identity_names = []

    def load(self, index: int) -> torch.Tensor:
        return load_tensor(self.sources[index], self.image_size, aligner=self.aligner)

    def describe(self, index: int) -> str:
        source = self.sources[index]
        if isinstance(source, bytes | bytearray):
            return f"image {index} of {self.origin}"
        return str(source)


class _TensorsOnly(Dataset):
    def __init__(self, dataset: EncodedImages) -> None:
        self.dataset = dataset

    @property
    def num_bad(self) -> int:
        return self.dataset.num_bad

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def distinct_images(images: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Which images of a pair set are the same image: ``(first, inverse)`` with
    ``images[first[inverse[i]]]`` the same image as ``images[i]``, so that each distinct image
    is loaded (and detected, and embedded) once however many pairs name it. LFW's 6,000 pairs
    name 12,000 images of which 7,701 are distinct.

    Same image: the same resolved file (pairs.txt), the same bytes (a ``.bin``, whose images
    are stored once per pair), the same dataset item (generated pairs). Any other dataset
    counts every position as its own image.
    """
    keys: list | None = None
    if isinstance(images, _TensorsOnly):
        sources = images.dataset.sources
        keys = [
            hashlib.sha256(s).digest()
            if isinstance(s, bytes | bytearray)
            else os.path.realpath(os.fspath(s))
            for s in sources
        ]
    elif isinstance(images, ImagesOnly):
        keys = images.indices.tolist()
    if keys is None:
        n = len(images)
        return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    slot: dict = {}
    first: list[int] = []
    inverse = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        k = slot.get(key)
        if k is None:
            k = slot[key] = len(first)
            first.append(i)
        inverse[i] = k
    return np.asarray(first, dtype=np.int64), inverse


# ---------------------------------------------------------------------------------------------
# .bin
# ---------------------------------------------------------------------------------------------
def _unpickle_bin(path: Path) -> object:
    try:
        return load_restricted(read_bytes(path, ".bin pair set"))  # never a FIFO or a device
    except RefusedPickle as exc:
        raise ValueError(
            f"{path}: refused: the pickle asks for {exc}, which a verification .bin never "
            "holds (only bytes, lists, tuples, booleans, integers and plain numpy arrays are "
            "built); nothing in it was run"
        ) from None
    except DamagedPickle as exc:
        raise ValueError(f"{path} is not a verification .bin pickle (damaged: {exc})") from None


def _describe(item: object) -> str:
    """What a wrong entry is, in a few words (never the repr of a large value)."""
    if item is None:
        return "None"
    if isinstance(item, bool | int | np.generic):
        return f"{type(item).__name__} {str(item)[:40]}"
    if isinstance(item, np.ndarray):
        return f"a {item.dtype} array of shape {item.shape}"
    if isinstance(item, bytes | bytearray | str | list | tuple):
        return f"{type(item).__name__} (length {len(item)})"
    return type(item).__name__


def _images(bins: list | tuple, path: Path) -> list[bytes]:
    """The encoded images, each converted once (an entry repeated through the pickle's memo
    is not copied again)."""
    converted: dict[int, bytes] = {}
    images = []
    for index, item in enumerate(bins):
        if id(item) not in converted:
            if isinstance(item, bytes):
                converted[id(item)] = item
            elif isinstance(item, bytearray):
                converted[id(item)] = bytes(item)
            elif isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
                converted[id(item)] = item.tobytes()
            else:
                raise ValueError(
                    f"{path}: image {index} is {_describe(item)}, not encoded image bytes "
                    "(a .bin holds a list of JPEG/PNG bytes)"
                )
        images.append(converted[id(item)])
    return images


def _flags(issame: object, path: Path) -> np.ndarray:
    """The issame flags: a list or tuple of booleans (or 0 / 1), a bool (or 0 / 1) array of at
    most one dimension, or one boolean (a 0-d array: one pair)."""
    if isinstance(issame, bool | np.bool_) or (isinstance(issame, np.ndarray) and issame.ndim == 0):
        issame = np.asarray(issame).reshape(1)
    if isinstance(issame, np.ndarray):
        if issame.ndim != 1 or issame.dtype.kind not in "biu":
            raise ValueError(
                f"{path}: the issame flags are {_describe(issame)}, not a 1-d bool array"
            )
        bad = np.flatnonzero((issame != 0) & (issame != 1))
        if len(bad):
            raise ValueError(f"{path}: issame flag {bad[0]} is {issame[bad[0]]}, not a boolean")
        return issame.astype(bool)
    flags = np.empty(len(issame), dtype=bool)
    for index, item in enumerate(issame):
        if not (
            isinstance(item, bool | np.bool_)
            or (isinstance(item, int | np.integer) and item in (0, 1))
        ):
            raise ValueError(f"{path}: issame flag {index} is {_describe(item)}, not a boolean")
        flags[index] = bool(item)
    return flags


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Read an InsightFace verification ``.bin``: ``(encoded images (2N), issame (N))``.

    The pickle is run by :func:`marginface.data.formats.restricted_pickle.load_restricted`, a pickle
    machine that builds only bytes, lists, tuples, booleans, integers and plain numpy arrays
    and calls nothing a file names: anything else, a damaged file, or one asking for more
    memory than its size warrants, is a ``ValueError`` naming the file. Python 2 strings load
    as bytes (InsightFace's own files).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"verification file {path} does not exist")
    data = _unpickle_bin(path)  # a folder, FIFO or device: refused by read_bytes
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise ValueError(f"{path}: expected a pickle of (bins, issame_list), got {_describe(data)}")
    bins, issame = data
    if not isinstance(bins, list | tuple) or not isinstance(
        issame, list | tuple | np.ndarray | bool | np.bool_
    ):
        raise ValueError(
            f"{path}: expected (list of images, list of issame flags), got "
            f"({type(bins).__name__}, {type(issame).__name__})"
        )
    images = _images(bins, path)
    flags = _flags(issame, path)
    if len(images) != 2 * len(flags):
        raise ValueError(
            f"{path}: {len(images)} images for {len(flags)} issame flags "
            f"(a .bin holds 2 images per pair: expected {2 * len(flags)})"
        )
    return images, flags


def write_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write a verification ``.bin`` in InsightFace's layout (pickle of ``(bins, issame)``)."""
    if len(images) != 2 * len(issame):
        raise ValueError(f"{len(images)} images for {len(issame)} pairs (need 2 per pair)")
    data = ([bytes(b) for b in images], [bool(x) for x in issame])
    atomic_write(path, lambda f: pickle.dump(data, f, protocol=4))


def pairs_to_bin(
    pairs_file: str | os.PathLike,
    output: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    aligner=None,
) -> tuple[int, int]:
    """Write an LFW-style pair list as an InsightFace verification ``.bin``.

    The images named by ``pairs_file`` (see :func:`read_pairs_txt`) are stored as their files'
    bytes, unchanged (each is decoded once to check it); with an ``aligner``
    (:class:`marginface.data.detection.detect.FaceAligner`) they are raw photos, stored as the PNG
    of their aligned face. An image that cannot be read, or holds no face, is an error naming it.
    Returns ``(pairs, genuine pairs)``.
    """
    import io

    from marginface.data.transforms import decode_image

    check_writable_file(output, "output")  # before any image is read
    paths, issame = read_pairs_txt(pairs_file, folder)
    images: list[bytes] = []
    encoded: dict[Path, bytes] = {}
    for path in paths:
        if path not in encoded:
            try:
                image = decode_image(path)
                if aligner is None:
                    encoded[path] = read_bytes(path, "image")
                else:
                    buffer = io.BytesIO()
                    aligner(image).save(buffer, format="PNG")
                    encoded[path] = buffer.getvalue()
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise ValueError(f"cannot store {path} in {output}: {exc}") from None
        images.append(encoded[path])
    write_bin(output, images, issame)
    return len(issame), int(issame.sum())


def open_bin(
    path: str | os.PathLike, image_size: int | tuple[int, int] = 112, aligner=None
) -> PairSet:
    images, issame = read_bin(path)
    dataset = EncodedImages(images, image_size, origin=str(path))
    dataset.aligner = aligner
    return PairSet(_TensorsOnly(dataset), issame, Path(path).stem)


# ---------------------------------------------------------------------------------------------
# LFW pairs.txt
# ---------------------------------------------------------------------------------------------
def _find_image(folder: Path, name: str, number: int, where: str) -> Path:
    stem = resolve_inside(folder, f"{name}/{name}_{number:04d}", where)
    for ext in IMAGE_EXTENSIONS:
        for candidate in (stem.parent / (stem.name + ext), stem.parent / (stem.name + ext.upper())):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{where}: no image {stem}.jpg (or other image extension)")


def _guess_folder(pairs_file: Path, first_name: str | None) -> Path:
    parent = pairs_file.parent
    if first_name is None or (parent / first_name).is_dir():
        return parent
    for sub in sorted(p for p in parent.iterdir() if p.is_dir()):
        if (sub / first_name).is_dir():
            return sub
    return parent


def _header(fields: list[str]) -> tuple[int, int] | None:
    """``(folds, genuine pairs per fold)`` of a header line, or None when it is not one: LFW's
    ``10 300`` (10 folds of 300 genuine then 300 impostor pairs), or a single ``N`` (one set
    of N genuine then N impostor pairs, as pairsDevTrain.txt)."""
    if not 1 <= len(fields) <= 2 or not all(f.isdigit() for f in fields):
        return None
    return (int(fields[0]), int(fields[1])) if len(fields) == 2 else (1, int(fields[0]))


def read_pairs_header(pairs_file: str | os.PathLike) -> tuple[int, int] | None:
    """The header of an LFW ``pairs.txt``: ``(folds, genuine pairs per fold)``, or None."""
    lines = read_text(pairs_file, "pairs file").splitlines()
    return _header(lines[0].split()) if lines else None


def read_pairs_txt(
    pairs_file: str | os.PathLike, folder: str | os.PathLike | None = None
) -> tuple[list[Path], np.ndarray]:
    """Parse an LFW ``pairs.txt``: ``(image paths (2N), issame (N))``.

    Lines are ``name i j`` (same person) or ``name1 i name2 j``; a first line of one or two
    integers (folds, genuine pairs per fold: :func:`read_pairs_header`) is a header. Image
    ``i`` of ``name`` is ``FOLDER/name/name_%04d.jpg``; ``folder`` defaults to the folder
    holding ``pairs_file`` (or the sub-folder of it that holds the first named person). A name
    that leads outside FOLDER (``..``, an absolute path, a symlink out) is refused.
    """
    pairs_file = Path(pairs_file)
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(read_text(pairs_file, "pairs file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if number == 1 and _header(fields) is not None:
            continue  # header: folds and pairs per fold (read_pairs_header)
        if len(fields) not in (3, 4):
            raise ValueError(
                f"{pairs_file} line {number}: expected 'name i j' or 'name1 i name2 j', "
                f"got {len(fields)} fields: {line.strip()!r}"
            )
        rows.append((number, fields))
    if not rows:
        raise ValueError(f"pairs file {pairs_file} holds no pairs")
    root = Path(folder) if folder is not None else _guess_folder(pairs_file, rows[0][1][0])
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} for {pairs_file} does not exist")
    paths: list[Path] = []
    issame: list[bool] = []
    for number, fields in rows:
        where = f"{pairs_file} line {number}"
        try:
            if len(fields) == 3:
                a, b = (fields[0], int(fields[1])), (fields[0], int(fields[2]))
            else:
                a, b = (fields[0], int(fields[1])), (fields[2], int(fields[3]))
        except ValueError:
            raise ValueError(f"{where}: image numbers must be integers: {fields}") from None
        paths.append(_find_image(root, a[0], a[1], where))
        paths.append(_find_image(root, b[0], b[1], where))
        issame.append(len(fields) == 3)
    return paths, np.asarray(issame, dtype=bool)


def open_pairs_txt(
    pairs_file: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] = 112,
    aligner=None,
) -> PairSet:
    paths, issame = read_pairs_txt(pairs_file, folder)
    name = Path(folder).name if folder is not None else Path(pairs_file).parent.name
    dataset = EncodedImages(paths, image_size, origin=str(pairs_file))
    dataset.aligner = aligner
    header = read_pairs_header(pairs_file)
    groups = np.asarray([p.parent.name for p in paths[0::2]])  # the first face's person
    return PairSet(_TensorsOnly(dataset), issame, name or "pairs", groups, header=header)


# ---------------------------------------------------------------------------------------------
# CSV pair lists
# ---------------------------------------------------------------------------------------------
_SAME = {"1": True, "true": True, "yes": True, "same": True}
_DIFFERENT = {"0": False, "false": False, "no": False, "different": False}


def read_pairs_csv(
    pairs_file: str | os.PathLike, folder: str | os.PathLike | None = None
) -> tuple[list[Path], np.ndarray, np.ndarray | None]:
    """Parse a CSV pair list: ``(image paths (2N), issame (N), groups (N) or None)``.

    A header row names the columns ``a``, ``b`` (image paths relative to ``folder``, default
    the CSV's folder; one leading outside it is refused), ``same`` (1/0, true/false, yes/no,
    same/different) and, optionally, ``identity`` (the person of image ``a``: the pairs'
    groups for a bootstrap over identities). Other columns are ignored.
    """
    import csv

    pairs_file = Path(pairs_file)
    rows = list(csv.reader(read_text(pairs_file, "pairs file").splitlines()))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    missing = [c for c in ("a", "b", "same") if c not in header]
    if missing:
        raise ValueError(
            f"{pairs_file}: the first row must name the columns a, b, same (and optionally "
            f"identity); {', '.join(missing)} missing"
        )
    col = {name: header.index(name) for name in ("a", "b", "same", "identity") if name in header}
    root = Path(folder) if folder is not None else pairs_file.parent
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} for {pairs_file} does not exist")
    paths: list[Path] = []
    issame: list[bool] = []
    groups: list[str] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue
        where = f"{pairs_file} line {number}"
        if len(row) < len(header):
            raise ValueError(f"{where}: {len(row)} fields, the header names {len(header)}")
        flag = row[col["same"]].strip().lower()
        if flag not in _SAME and flag not in _DIFFERENT:
            raise ValueError(f"{where}: same must be 1/0, true/false, yes/no, got {flag!r}")
        for key in ("a", "b"):
            path = resolve_inside(root, row[col[key]].strip(), where)
            if not path.is_file():
                raise FileNotFoundError(f"{where}: no image {path}")
            paths.append(path)
        issame.append(_SAME.get(flag, False))
        if "identity" in col:
            groups.append(row[col["identity"]].strip())
    if not issame:
        raise ValueError(f"pairs file {pairs_file} holds no pairs")
    return paths, np.asarray(issame, dtype=bool), np.asarray(groups) if groups else None


def open_pairs_csv(
    pairs_file: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] = 112,
    aligner=None,
) -> PairSet:
    paths, issame, groups = read_pairs_csv(pairs_file, folder)
    dataset = EncodedImages(paths, image_size, origin=str(pairs_file))
    dataset.aligner = aligner
    return PairSet(_TensorsOnly(dataset), issame, Path(pairs_file).stem or "pairs", groups)


# ---------------------------------------------------------------------------------------------
# generated pairs
# ---------------------------------------------------------------------------------------------
def generate_pairs(
    labels: np.ndarray, max_pairs: int = 3000, seed: int = 0, impostors: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded verification pairs from item labels.

    All genuine pairs (two items of one identity) up to ``max_pairs`` (a uniform sample when
    there are more), then as many impostor pairs (two identities), or ``impostors`` of them
    (e.g. many more, so that TAR at a small FAR rests on many false accepts), interleaved
    genuine / impostor as far as both last, so that contiguous folds are balanced.

    Returns ``(index pairs (N, 2) int64, issame (N,) bool)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    rng = np.random.default_rng([seed, 7])
    order = np.argsort(labels, kind="stable")
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    per_class = counts * (counts - 1) // 2
    total = int(per_class.sum())
    if total == 0:
        raise ValueError(
            f"no genuine pair: every one of the {len(classes)} identities has a single image"
        )
    if len(classes) < 2:
        raise ValueError("impostor pairs need at least two identities; the dataset has one")
    n_genuine = min(total, max_pairs)
    if total <= max_pairs:
        genuine = [
            (order[s + i], order[s + j])
            for s, c in zip(starts, counts, strict=True)
            for i in range(c)
            for j in range(i + 1, c)
        ]
        genuine = np.asarray(genuine, dtype=np.int64)[rng.permutation(total)]
    else:
        chosen: set[tuple[int, int]] = set()
        probs = per_class / total
        while len(chosen) < n_genuine:
            need = n_genuine - len(chosen)
            cls = rng.choice(len(classes), size=2 * need, p=probs)
            i = rng.integers(0, counts[cls])
            j = rng.integers(0, counts[cls] - 1)
            j = j + (j >= i)
            for c, a, b in zip(cls, np.minimum(i, j), np.maximum(i, j), strict=True):
                chosen.add((int(order[starts[c] + a]), int(order[starts[c] + b])))
                if len(chosen) == n_genuine:
                    break
        genuine = np.asarray(sorted(chosen), dtype=np.int64)[rng.permutation(n_genuine)]
    impostor_set: set[tuple[int, int]] = set()
    n = len(labels)
    max_impostor = (n * n - int((counts**2).sum())) // 2
    if impostors is not None and impostors < 1:
        raise ValueError(f"impostors must be >= 1 (or None: as many as genuine), got {impostors}")
    n_impostor = min(n_genuine if impostors is None else impostors, max_impostor)
    while len(impostor_set) < n_impostor:
        a = rng.integers(0, n, size=2 * n_impostor)
        b = rng.integers(0, n, size=2 * n_impostor)
        for x, y in zip(a, b, strict=True):
            if labels[x] != labels[y]:
                impostor_set.add((int(min(x, y)), int(max(x, y))))
                if len(impostor_set) == n_impostor:
                    break
    impostor = np.asarray(sorted(impostor_set), dtype=np.int64)[rng.permutation(n_impostor)]
    n_pairs = n_genuine + n_impostor
    pairs = np.empty((n_pairs, 2), dtype=np.int64)
    issame = np.empty(n_pairs, dtype=bool)
    k = min(n_genuine, n_impostor)
    pairs[0 : 2 * k : 2], issame[0 : 2 * k : 2] = genuine[:k], True
    pairs[1 : 2 * k : 2], issame[1 : 2 * k : 2] = impostor[:k], False
    rest, same = (genuine[k:], True) if n_genuine > k else (impostor[k:], False)
    pairs[2 * k :], issame[2 * k :] = rest, same
    return pairs, issame


def pairs_from_dataset(
    dataset: FaceDataset, name: str, max_pairs: int = 3000, seed: int = 0
) -> PairSet:
    """Generated pairs (see :func:`generate_pairs`) over ``dataset``'s items."""
    pairs, issame = generate_pairs(dataset.labels, max_pairs=max_pairs, seed=seed)
    groups = np.asarray(dataset.labels)[pairs[:, 0]]
    return PairSet(ImagesOnly(dataset, pairs.reshape(-1)), issame, name, groups)
