"""A gallery built once and searched many times: exact, or approximate for very large galleries.

Kinds (all by cosine similarity: the gallery is L2-normalised once, queries at each search):

- ``exact``: :func:`~marginface.inference.search.cosine_search` (torch blocks, or faiss's
  ``IndexFlatIP`` when installed); every gallery row is scored.
- ``hnsw``: faiss's ``IndexHNSWFlat`` (a graph over the full vectors): high recall, fast
  queries, but it keeps every vector in float32 plus the graph (about D x 4 + M x 8 bytes a
  row: 2.3 GB at 1M x 512).
- ``ivfpq``: faiss's ``IndexIVFPQ`` (k-means cells, vectors compressed to D / 8 bytes): the one
  that fits 10M x 512 in memory (64 bytes a row), at lower recall; scores are estimates from the
  compressed vectors.
- ``auto``: ``exact`` up to :data:`APPROXIMATE_ABOVE` rows, ``hnsw`` above it while it fits
  :data:`HNSW_MEMORY`, ``ivfpq`` beyond (benchmarks/search_scale.py measured where exact search
  stops answering in interactive time and the recall each kind keeps).

The approximate kinds need faiss (``pip install faiss-cpu``, the ``[search]`` extra).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from marginface.inference.search import _as_matrix, _normalise, cosine_search, faiss_available

#: galleries larger than this get an approximate index with ``kind="auto"``
APPROXIMATE_ABOVE = 1_000_000
#: largest HNSW index ``kind="auto"`` builds (bytes); beyond it, IVF-PQ
HNSW_MEMORY = 8 * 2**30
KINDS = ("auto", "exact", "hnsw", "ivfpq")


@dataclass
class GalleryIndex:
    """A searchable gallery (build it with :func:`build_index`)."""

    kind: str
    size: int
    dim: int
    params: dict[str, Any] = field(default_factory=dict)
    _gallery: np.ndarray | None = None
    _faiss: Any = None
    _quantizer: Any = None  # kept alive beside the IVF index that points to it

    def add(self, rows: ArrayLike) -> None:
        """Add gallery ``rows`` (N, D) to an approximate index (their indices follow the rows
        already added)."""
        if self._faiss is None:
            raise ValueError("an exact index is built whole by build_index; it takes no add()")
        block = np.asarray(rows, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise ValueError(f"rows must be (N, {self.dim}), got shape {block.shape}")
        if not np.all(np.isfinite(block)):
            raise ValueError("gallery rows hold non-finite values (NaN or inf)")
        self._faiss.add(np.ascontiguousarray(_normalise(block)))
        self.size = int(self._faiss.ntotal)

    def search(self, queries: ArrayLike, top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (Q, k) float32, indices (Q, k) int64)``, best first; ``k`` = min(top_k,
        size). Approximate kinds may return fewer than ``k`` hits for a query (index -1,
        score -inf) when the cells they visit hold fewer rows."""
        q = _as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(
                f"queries have dimension {q.shape[1]} but the gallery has dimension {self.dim}"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if self.size == 0:
            raise ValueError("the index is empty: add gallery rows first")
        k = min(top_k, self.size)
        if self._faiss is None:
            return cosine_search(q, self._gallery, top_k=k, backend=self.params["backend"])
        scores, indices = self._faiss.search(np.ascontiguousarray(_normalise(q)), k)
        scores = scores.astype(np.float32)
        scores[indices < 0] = -np.inf
        return scores, indices.astype(np.int64)


#: gallery rows checked, normalised and added to a faiss index at a time
ADD_BLOCK = 1 << 18


def _gallery_rows(gallery: ArrayLike) -> np.ndarray:
    """``gallery`` as a (G, D) array; an array (or a memory map of one, e.g.
    ``np.load(path, mmap_mode="r")``) is not copied: the approximate kinds read it block by
    block, checking each."""
    g = gallery if isinstance(gallery, np.ndarray) else np.asarray(gallery, dtype=np.float32)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[1] == 0:
        raise ValueError(f"gallery must be a non-empty (N, D) matrix, got shape {g.shape}")
    return g


def hnsw_bytes(size: int, dim: int, links: int = 32) -> int:
    """Memory of an ``IndexHNSWFlat`` of ``size`` rows: float32 vectors + about 2 x ``links``
    neighbour ids of 4 bytes a row on its base level."""
    return size * (4 * dim + 8 * links)


def choose_kind(size: int, dim: int, have_faiss: bool | None = None) -> str:
    """What ``kind="auto"`` builds for a gallery of ``size`` x ``dim``."""
    if size <= APPROXIMATE_ABOVE:
        return "exact"
    if not (faiss_available() if have_faiss is None else have_faiss):
        warnings.warn(
            f"a gallery of {size:,} rows is searched exactly (slow): install faiss-cpu for an "
            "approximate index",
            stacklevel=3,
        )
        return "exact"
    return "hnsw" if hnsw_bytes(size, dim) <= HNSW_MEMORY else "ivfpq"


def build_index(
    gallery: ArrayLike,
    kind: str = "auto",
    *,
    backend: str = "auto",
    links: int = 32,
    ef_search: int = 128,
    cells: int | None = None,
    probes: int = 32,
    code_bytes: int | None = None,
    train_rows: int = 131_072,
    seed: int = 0,
) -> GalleryIndex:
    """An index of ``gallery`` (G, D) for :meth:`GalleryIndex.search` (cosine similarity).

    Args:
        kind: ``auto``, ``exact``, ``hnsw`` or ``ivfpq`` (see the module docstring).
        backend: the exact kind's backend (:func:`~marginface.inference.search.cosine_search`).
        links, ef_search: HNSW's neighbours per node (``M``) and search breadth (``efSearch``).
        cells, probes: IVF-PQ's k-means cells (default 4 x sqrt(G), at most 65,536) and cells
            visited per query (``nprobe``).
        code_bytes: IVF-PQ's bytes per vector (sub-quantisers of 8 bits; default D / 8, which
            must divide D).
        train_rows: rows IVF-PQ's k-means and quantisers are trained on (a seeded sample).
    """
    g = _gallery_rows(gallery)
    size, dim = g.shape
    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "auto":
        kind = choose_kind(size, dim)
    if kind == "exact":
        exact = _as_matrix(g, "gallery")
        return GalleryIndex("exact", size, dim, {"backend": backend}, _gallery=exact)
    rng = np.random.default_rng(seed)
    sample = g[np.sort(rng.choice(size, min(size, train_rows), replace=False))]
    index = approximate_index(
        kind, dim, size, sample, links=links, ef_search=ef_search, cells=cells, probes=probes,
        code_bytes=code_bytes, seed=seed,
    )  # fmt: skip
    for start in range(0, size, ADD_BLOCK):
        index.add(g[start : start + ADD_BLOCK])
    return index


def approximate_index(
    kind: str,
    dim: int,
    size: int,
    sample: ArrayLike | None = None,
    *,
    links: int = 32,
    ef_search: int = 128,
    cells: int | None = None,
    probes: int = 32,
    code_bytes: int | None = None,
    seed: int = 0,
) -> GalleryIndex:
    """An empty ``hnsw`` or ``ivfpq`` index for about ``size`` rows of dimension ``dim``, to be
    filled block by block with :meth:`GalleryIndex.add` (a gallery larger than memory as float32,
    e.g. 10M x 512 = 20 GB, goes in this way). IVF-PQ trains on ``sample`` (rows like the
    gallery's, e.g. a random subset). Parameters as :func:`build_index`."""
    if kind not in ("hnsw", "ivfpq"):
        raise ValueError(f"approximate index kind must be hnsw or ivfpq, got {kind!r}")
    if not faiss_available():
        raise ValueError(f"index kind {kind!r} needs faiss (pip install faiss-cpu)")
    import faiss

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, links, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
        params = {"links": links, "ef_search": ef_search}
        return GalleryIndex("hnsw", 0, dim, params, _faiss=index)
    cells = cells or int(min(65_536, max(1, 4 * math.sqrt(size))))
    code_bytes = code_bytes or max(1, dim // 8)
    if dim % code_bytes:
        raise ValueError(f"code_bytes must divide the dimension {dim}, got {code_bytes}")
    rows = 0 if sample is None else len(sample)
    if rows < max(cells, 256):
        raise ValueError(
            f"an IVF-PQ index of {cells} cells needs at least {max(cells, 256)} gallery rows to "
            f"train on, got {rows}: use kind='exact' or 'hnsw'"
        )
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, cells, code_bytes, 8, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.pq.cp.seed = seed
    index.train(np.ascontiguousarray(_normalise(np.asarray(sample, dtype=np.float32))))
    index.nprobe = min(probes, cells)
    params = {"cells": cells, "probes": index.nprobe, "code_bytes": code_bytes}
    return GalleryIndex("ivfpq", 0, dim, params, _faiss=index, _quantizer=quantizer)
