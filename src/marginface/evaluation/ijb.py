"""IJB-B / IJB-C 1:1 template verification, computed as InsightFace's ``eval_ijbc.py`` does.

The benchmark's own files (InsightFace's IJB release layout), under ``ROOT``:

- ``meta/ijbc_name_5pts_score.txt``: per face image, ``name x1 y1 ... x5 y5 score``: its file in
  ``loose_crop/``, 5 landmarks, and the detector's faceness score;
- ``meta/ijbc_face_tid_mid.txt``: per face image, in the same order, ``name template media``;
- ``meta/ijbc_template_pair_label.txt``: ``template1 template2 label`` (1 = same person).

(``ijbb_*`` for IJB-B.) The protocol, step by step:

1. each loose crop is aligned by its 5 points to the ArcFace 112x112 template;
2. image feature = embedding of the crop + embedding of its mirror (flip test), **not**
   normalised (InsightFace's "norm score" mode keeps the norm as a quality signal), then
   multiplied by the faceness score (its "detector score" mode);
3. within a template, the features of one media (the frames of one video) are averaged; the
   template feature is the sum over its media, then L2-normalised;
4. a pair's score is the cosine of its two template features;
5. ROC (scikit-learn's ``roc_curve`` with its default dropping of collinear points); TAR at each
   FAR in 1e-6 .. 1e-1 is the TPR of the ROC point whose FPR is *nearest* that FAR (ties: the
   larger TPR), which is how eval_ijbc.py reads its table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from marginface.evaluation.embed import EmbedOptions, embed_dataset
from marginface.evaluation.metrics import FARS, far_key
from marginface.files import read_text, resolve_inside
from marginface.text import short_repr

_INT64 = np.iinfo(np.int64)


def _ids(path: Path, rows: list[list[str]], first: int) -> np.ndarray:
    """The integer columns ``first:`` of ``rows`` as int64; ValueError naming the file and line
    for a field that is not an integer or does not fit in 64 bits (ids are int64)."""
    out = np.empty((len(rows), len(rows[0]) - first), dtype=np.int64)
    for number, row in enumerate(rows):
        for column, text in enumerate(row[first:]):
            try:
                value = int(text)
            except ValueError:
                value = None
            if value is None or not _INT64.min <= value <= _INT64.max:
                raise ValueError(
                    f"{path} row {number + 1}: {short_repr(text)} is not an integer id "
                    f"(ids are 64-bit integers, |id| < 2^63)"
                )
            out[number, column] = value
    return out


def _numbers(path: Path, rows: list[list[str]]) -> np.ndarray:
    """Columns ``1:`` of ``rows`` as finite floats; ValueError naming the file and row otherwise."""
    out = np.empty((len(rows), len(rows[0]) - 1), dtype=np.float64)
    for number, row in enumerate(rows):
        try:
            out[number] = [float(v) for v in row[1:]]
        except ValueError:
            out[number] = np.nan
        if not np.isfinite(out[number]).all():
            raise ValueError(
                f"{path} row {number + 1}: landmarks and score must be finite numbers, got "
                f"{short_repr(' '.join(row[1:]))}"
            )
    return out


@dataclass
class IJBMeta:
    """One IJB benchmark's metadata: per face image ``names`` (N), ``landmarks`` (N, 5, 2),
    ``faceness`` (N), ``templates`` (N), ``medias`` (N); per pair ``pairs`` (P, 2) of template ids
    and ``labels`` (P,)."""

    root: Path
    target: str
    names: list[str]
    landmarks: np.ndarray
    faceness: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray


def _rows(path: Path, fields: int | None = None) -> list[list[str]]:
    rows = []
    for number, line in enumerate(read_text(path, "IJB metadata file").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if fields is not None and len(parts) != fields:
            raise ValueError(f"{path} line {number}: expected {fields} fields, got {len(parts)}")
        rows.append(parts)
    if not rows:
        raise ValueError(f"IJB metadata file {path} is empty")
    return rows


#: lines parsed at a time from the integer tables (IJB-C's pair list has 15.7M lines)
TABLE_BLOCK_LINES = 1 << 20


def _int_table(path: Path, fields: int) -> np.ndarray:
    """The whole numbers of a table of ``fields`` columns as an (R, fields) int64 array, read in
    blocks of :data:`TABLE_BLOCK_LINES` lines so that no list of Python strings of the whole file
    is ever held; errors name the file and the line."""
    if not path.is_file():
        raise FileNotFoundError(f"IJB metadata file {path} does not exist")
    blocks: list[np.ndarray] = []
    number = 0
    with open(path, "rb") as handle:
        while True:
            lines = handle.readlines(TABLE_BLOCK_LINES * 16)
            if not lines:
                break
            tokens = b" ".join(lines).split()
            try:
                block = np.array(tokens, dtype=np.int64) if tokens else np.empty(0, np.int64)
            except (ValueError, OverflowError):
                block = None
            if (
                block is None
                or len(block) % fields
                or len(block) // fields != sum(1 for line in lines if line.strip())
            ):
                _raise_bad_line(path, lines, number, fields)
            blocks.append(block.reshape(-1, fields))
            number += len(lines)
    if not blocks or sum(len(b) for b in blocks) == 0:
        raise ValueError(f"IJB metadata file {path} is empty")
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


def _raise_bad_line(path: Path, lines: list[bytes], before: int, fields: int) -> None:
    for offset, line in enumerate(lines, start=before + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != fields:
            raise ValueError(f"{path} line {offset}: expected {fields} fields, got {len(parts)}")
        for part in parts:
            try:
                value = int(part)
            except ValueError:
                value = None
            if value is None or not _INT64.min <= value <= _INT64.max:
                raise ValueError(
                    f"{path} row {offset}: {short_repr(part.decode(errors='replace'))} is not an "
                    "integer id (ids are 64-bit integers, |id| < 2^63)"
                )
    raise ValueError(f"{path}: unreadable lines after line {before}")


def find_target(root: str | os.PathLike) -> str:
    """``IJBC`` or ``IJBB``: whichever ``ROOT/meta/<target>_template_pair_label.txt`` exists."""
    meta = Path(root) / "meta"
    found = [
        t for t in ("IJBC", "IJBB") if (meta / f"{t.lower()}_template_pair_label.txt").is_file()
    ]
    if len(found) != 1:
        raise FileNotFoundError(
            f"{root}/meta holds {'both' if found else 'neither'} ijbc_template_pair_label.txt "
            "and ijbb_template_pair_label.txt: give the target (IJBB or IJBC)"
        )
    return found[0]


def read_ijb_meta(root: str | os.PathLike, target: str | None = None) -> IJBMeta:
    """Read the three metadata files of ``ROOT/meta`` (see the module docstring)."""
    root = Path(root)
    target = (target or find_target(root)).upper()
    if target not in ("IJBB", "IJBC"):
        raise ValueError(f"target must be IJBB or IJBC, got {target!r}")
    meta = root / "meta"
    prefix = target.lower()
    faces = _rows(meta / f"{prefix}_name_5pts_score.txt", 12)
    tid_mid = _rows(meta / f"{prefix}_face_tid_mid.txt", 3)
    pair_array = _int_table(meta / f"{prefix}_template_pair_label.txt", 3)
    if len(faces) != len(tid_mid):
        raise ValueError(
            f"{prefix}_name_5pts_score.txt lists {len(faces)} images but "
            f"{prefix}_face_tid_mid.txt {len(tid_mid)}"
        )
    numbers = _numbers(meta / f"{prefix}_name_5pts_score.txt", faces)
    ids = _ids(meta / f"{prefix}_face_tid_mid.txt", tid_mid, 1)
    crops = root / "loose_crop"
    for number, row in enumerate(faces, start=1):  # every crop inside ROOT/loose_crop
        resolve_inside(crops, row[0], f"{meta / f'{prefix}_name_5pts_score.txt'} row {number}")
    named = np.unique(pair_array[:, :2])
    unknown = np.setdiff1d(named, ids[:, 0], assume_unique=False)
    if len(unknown):
        raise ValueError(f"template pairs name templates without images: {unknown[:5].tolist()}")
    return IJBMeta(
        root=root,
        target=target,
        names=[row[0] for row in faces],
        landmarks=numbers[:, :10].reshape(-1, 5, 2),
        faceness=numbers[:, 10],
        templates=ids[:, 0],
        medias=ids[:, 1],
        pairs=pair_array[:, :2],
        labels=pair_array[:, 2],
    )


class AlignedLooseCrops(Dataset):
    """The benchmark's loose crops (``ROOT/loose_crop/<name>``) aligned by their 5 points to the
    ArcFace template: items are (3, S, S) tensors in [-1, 1]."""

    def __init__(self, meta: IJBMeta, image_size: int = 112) -> None:
        self.meta = meta
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.meta.names)

    def __getitem__(self, index: int) -> torch.Tensor:
        from marginface.data.detection.align import align_face
        from marginface.data.transforms import decode_image, to_tensor

        name = self.meta.names[index]
        path = resolve_inside(self.meta.root / "loose_crop", name, f"IJB image {index}")
        image = decode_image(path)
        return to_tensor(align_face(image, self.meta.landmarks[index], self.image_size))


def image_features(
    model: nn.Module, dataset: Dataset, options: EmbedOptions | None = None
) -> np.ndarray:
    """Unnormalised float64 features (N, D): model(image) + model(mirrored image) with
    ``options.flip`` (:func:`~marginface.evaluation.embed.embed_dataset` with
    ``normalize=False``)."""
    return embed_dataset(
        model, dataset, options, normalize=False, dtype=np.float64, desc="IJB images"
    )


def template_features(
    features: np.ndarray,
    templates: np.ndarray,
    medias: np.ndarray,
    faceness: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Template features (T, D), L2-normalised, and the sorted template ids (T,).

    ``features`` (N, D) are weighted by ``faceness`` (N,) when given; a template's media are
    each averaged over their images, then summed. That is one weighted sum per template,
    ``sum_i w_i f_i`` with ``w_i = faceness_i / (images of i's media in i's template)``,
    computed as one sparse (T, N) x (N, D) product in float64: no copy of ``features`` is
    made, which is what keeps IJB-C's 469,375 features within memory.
    """
    from scipy.sparse import csr_matrix

    templates = np.asarray(templates).reshape(-1)
    medias = np.asarray(medias).reshape(-1)
    if features.ndim != 2 or not len(features) == len(templates) == len(medias):
        raise ValueError(
            f"features {features.shape}, {len(templates)} template ids and {len(medias)} media "
            "ids must describe the same images"
        )
    unique, row = np.unique(templates, return_inverse=True)
    _, group, count = np.unique(
        np.stack([row, medias]), axis=1, return_inverse=True, return_counts=True
    )
    weight = 1.0 / count[group.reshape(-1)]
    if faceness is not None:
        weight = weight * np.asarray(faceness, dtype=np.float64).reshape(-1)
    pool = csr_matrix(
        (weight, (row.reshape(-1), np.arange(len(row)))), shape=(len(unique), len(row))
    )
    out = np.asarray(pool @ np.asarray(features, dtype=np.float64), dtype=np.float64)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, np.finfo(np.float64).tiny), unique


#: rows of the template Gram matrix computed at a time by :func:`template_pair_scores`
#: (2,048 x 23,124 x 8 bytes = 361 MiB for IJB-C)
GRAM_ROWS = 2048


def template_pair_scores(
    feats: np.ndarray, template_ids: np.ndarray, pairs: np.ndarray, block: int = GRAM_ROWS
) -> np.ndarray:
    """Cosine scores (P,) of template pairs (P, 2) of ids, from :func:`template_features`.

    IJB-C pairs 23,124 templates 15.7M times: gathering both sides of every pair would move
    2 x 15.7M x D floats, while the templates' whole Gram matrix is only T x T. It is computed
    ``block`` rows at a time (one matrix product each) and each pair reads its score from the
    block that holds its first template.
    """
    ids = np.asarray(template_ids)
    pairs = np.asarray(pairs)
    order = np.argsort(ids, kind="stable")
    where = np.searchsorted(ids, pairs.reshape(-1), sorter=order)
    where = np.minimum(where, len(ids) - 1)
    position = order[where].reshape(pairs.shape)
    if not np.array_equal(ids[position], pairs):
        missing = pairs[ids[position] != pairs][:5].tolist()
        raise ValueError(f"template pairs name templates without features: {missing}")
    scores = np.empty(len(pairs), dtype=np.float64)
    by_first = np.argsort(position[:, 0], kind="stable")
    cuts = np.searchsorted(position[by_first, 0], np.arange(0, len(feats) + block, block))
    for number, start in enumerate(range(0, len(feats), block)):
        chosen = by_first[cuts[number] : cuts[number + 1]]
        if len(chosen) == 0:
            continue
        gram = feats[start : start + block] @ feats.T
        scores[chosen] = gram[position[chosen, 0] - start, position[chosen, 1]]
    return scores


def nearest_far_tar(
    scores: np.ndarray, labels: np.ndarray, fars: tuple[float, ...] = FARS
) -> dict[float, float]:
    """TAR at each FAR as eval_ijbc.py reads it: the ROC point (collinear points dropped) whose
    FPR is nearest the FAR; among equally near points, the one with the larger TPR."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = fpr[::-1], tpr[::-1]
    out = {}
    for far in fars:
        distance = np.abs(fpr - far)
        out[far] = float(tpr[int(np.flatnonzero(distance == distance.min())[0])])
    return out


def evaluate_ijb(
    model: nn.Module,
    root: str | os.PathLike | IJBMeta,
    target: str | None = None,
    image_size: int = 112,
    options: EmbedOptions | None = None,
    detector_score: bool = True,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """IJB-B/C 1:1 verification of ``model`` (see the module docstring); ``options``: how the
    crops are embedded (:class:`~marginface.evaluation.embed.EmbedOptions`).

    Returns ``(metrics, scores, labels)``: metrics holds ``target``, ``num_pairs``,
    ``num_templates``, ``num_images``, ``auc`` and ``tar_at_far`` ({"1e-04": tar, ...}).
    """
    from sklearn.metrics import roc_auc_score

    meta = root if isinstance(root, IJBMeta) else read_ijb_meta(root, target)
    feats = image_features(model, AlignedLooseCrops(meta, image_size), options)
    templates, ids = template_features(
        feats, meta.templates, meta.medias, meta.faceness if detector_score else None
    )
    scores = template_pair_scores(templates, ids, meta.pairs)
    labels = meta.labels.astype(bool)
    metrics = {
        "target": meta.target,
        "num_pairs": int(len(scores)),
        "num_templates": int(len(ids)),
        "num_images": int(len(meta.names)),
        "auc": float(roc_auc_score(labels, scores)),
        "tar_at_far": {far_key(f): t for f, t in nearest_far_tar(scores, labels).items()},
    }
    return metrics, scores, labels
