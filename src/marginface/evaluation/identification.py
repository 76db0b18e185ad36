"""Closed-set 1:N identification: rank-k accuracy and the CMC curve.

Every probe is compared with every gallery image by cosine similarity; an identity's score is
its best gallery image's score.  The rank of a probe is 1 + the number of gallery identities
scoring strictly higher than the probe's own identity (ties are counted in the probe's
favour).  CMC(k) is the fraction of probes with rank <= k.

Default split on a labelled dataset (:func:`first_image_split`): the gallery holds the first
image of each identity, the probes are all the other images.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn
from torch.utils.data import Dataset, Subset

from marginface.evaluation.embed import EmbedOptions, embed_dataset


def first_image_split(labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(gallery indices, probe indices)``: the first item of each label, and the rest."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    _, first = np.unique(y, return_index=True)
    gallery = np.sort(first)
    is_probe = np.ones(len(y), dtype=bool)
    is_probe[gallery] = False
    return gallery, np.flatnonzero(is_probe)


#: bytes of scores :func:`probe_ranks` holds at a time
SCORE_MEMORY = 512 * 2**20


@torch.inference_mode()
def probe_ranks(
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    probes: ArrayLike,
    probe_labels: ArrayLike,
    chunk: int = 1024,
    memory: int = SCORE_MEMORY,
) -> np.ndarray:
    """Rank (1 = best) of each probe's true identity among the gallery identities.

    Probes whose identity has no gallery image get rank 0 (not identifiable). Probes are
    scored ``chunk`` at a time, fewer when a chunk's scores against every gallery image and
    identity would take more than ``memory`` bytes (a 1M-image gallery: about 60 probes at a
    time within the default 512 MiB, instead of 1024 x 1M x 4 bytes = 4 GiB).
    """
    g = F.normalize(torch.as_tensor(np.asarray(gallery, dtype=np.float32)), dim=1)
    p_all = np.asarray(probes, dtype=np.float32)
    gl = np.asarray(gallery_labels)
    pl = np.asarray(probe_labels)
    if g.ndim != 2 or p_all.ndim != 2 or g.shape[1] != p_all.shape[1]:
        raise ValueError(
            f"gallery {tuple(g.shape)} and probes {p_all.shape} must be (N, D) with equal D"
        )
    if len(gl) != len(g) or len(pl) != len(p_all):
        raise ValueError(
            f"{len(g)} gallery embeddings with {len(gl)} labels, {len(p_all)} probe "
            f"embeddings with {len(pl)} labels"
        )
    ids, g_col = np.unique(gl, return_inverse=True)
    col_of = {label: i for i, label in enumerate(ids.tolist())}
    target = np.array([col_of.get(label, -1) for label in pl.tolist()], dtype=np.int64)
    g_col_t = torch.as_tensor(g_col, dtype=torch.int64)
    per_probe = 4 * len(g) + 5 * len(ids)  # float32 scores, per-identity maxima, comparison
    chunk = max(1, min(chunk, memory // per_probe))
    ranks = np.zeros(len(p_all), dtype=np.int64)
    for start in range(0, len(p_all), chunk):
        p = F.normalize(torch.as_tensor(p_all[start : start + chunk]), dim=1)
        sims = p @ g.T  # (P, G)
        per_id = torch.full((len(p), len(ids)), float("-inf"))
        per_id.scatter_reduce_(1, g_col_t.expand(len(p), -1), sims, reduce="amax")
        t = torch.as_tensor(target[start : start + chunk])
        known = t >= 0
        own = per_id.gather(1, t.clamp(min=0)[:, None])
        rank = (per_id > own).sum(dim=1) + 1
        ranks[start : start + chunk] = torch.where(known, rank, torch.zeros_like(rank)).numpy()
    return ranks


def identification_metrics(
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    probes: ArrayLike,
    probe_labels: ArrayLike,
    max_rank: int = 100,
) -> dict[str, Any]:
    """Rank-1 / rank-5 accuracy and the CMC curve (ranks 1..min(max_rank, identities)).

    Probes whose identity is missing from the gallery are left out (counted in
    ``num_probes_without_gallery``, with a warning).

    Returns a JSON-friendly dict: ``rank1``, ``rank5``, ``cmc`` (list, ``cmc[k-1]`` = rank-k
    accuracy), ``num_gallery``, ``num_gallery_identities``, ``num_probes``,
    ``num_probes_without_gallery``.
    """
    ranks = probe_ranks(gallery, gallery_labels, probes, probe_labels)
    unknown = int((ranks == 0).sum())
    ranks = ranks[ranks > 0]
    num_ids = len(np.unique(np.asarray(gallery_labels)))
    if unknown:
        warnings.warn(
            f"{unknown} probes have no gallery image of their identity; left out", stacklevel=2
        )
    if len(ranks) == 0:
        raise ValueError(
            "identification needs probes whose identity is in the gallery; there are none "
            "(each identity needs at least two images with the default split)"
        )
    length = max(1, min(max_rank, num_ids))
    cmc = [float(np.mean(ranks <= k)) for k in range(1, length + 1)]
    return {
        "rank1": float(np.mean(ranks <= 1)),
        "rank5": float(np.mean(ranks <= 5)),
        "cmc": cmc,
        "num_gallery": int(len(np.asarray(gallery_labels))),
        "num_gallery_identities": int(num_ids),
        "num_probes": int(len(ranks)),
        "num_probes_without_gallery": unknown,
    }


def evaluate_identification(
    model: nn.Module,
    dataset: Dataset,
    labels: ArrayLike | None = None,
    gallery_indices: Sequence[int] | None = None,
    probe_indices: Sequence[int] | None = None,
    options: EmbedOptions | None = None,
    max_rank: int = 100,
) -> dict[str, Any]:
    """Identification metrics of ``model`` on a labelled dataset.

    Args:
        dataset: items ``(image, label)``; ``labels`` defaults to ``dataset.labels``.
        gallery_indices, probe_indices: item indices of the two sets; by default the first
            image of each identity is the gallery and the rest are probes.
        options: how the images are embedded (:class:`~marginface.evaluation.embed.EmbedOptions`).

    Returns: the dict of :func:`identification_metrics`.
    """
    if labels is None:
        labels = getattr(dataset, "labels", None)
        if labels is None:
            raise ValueError("labels not given and the dataset has no .labels attribute")
    y = np.asarray(labels)
    n = len(dataset)  # type: ignore[arg-type]
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for a dataset of {n} items")
    if (gallery_indices is None) != (probe_indices is None):
        raise ValueError("give both gallery_indices and probe_indices, or neither")
    if gallery_indices is None:
        g_idx, p_idx = first_image_split(y)
    else:
        g_idx = np.asarray(gallery_indices, dtype=np.int64)
        p_idx = np.asarray(probe_indices, dtype=np.int64)
        for name, idx in (("gallery", g_idx), ("probe", p_idx)):
            if len(idx) == 0 or idx.min() < 0 or idx.max() >= n:
                raise ValueError(f"{name} indices must be non-empty and within 0..{n - 1}")
    if len(p_idx) == 0:
        raise ValueError("no probe images: every identity has a single image")
    order = np.concatenate([g_idx, p_idx])
    emb = embed_dataset(model, Subset(dataset, order.tolist()), options)
    return identification_metrics(
        emb[: len(g_idx)], y[g_idx], emb[len(g_idx) :], y[p_idx], max_rank=max_rank
    )
