"""Exact cosine (inner-product) search of query embeddings in a gallery.

Torch backend: both sides L2-normalised, queries and gallery processed in chunks, a running
top-k merged across gallery chunks, so memory stays at ``query_chunk x gallery_chunk`` scores.
faiss backend (``IndexFlatIP``, also exact) when faiss is installed; it is the faster choice
for millions of gallery rows.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike


def faiss_available() -> bool:
    """Whether ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _as_matrix(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return a


def _normalise(a: np.ndarray) -> np.ndarray:
    return F.normalize(torch.from_numpy(a), dim=1).numpy()


def cosine_search(
    queries: ArrayLike,
    gallery: ArrayLike,
    top_k: int = 5,
    backend: str = "auto",
    query_chunk: int = 1024,
    gallery_chunk: int = 65536,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` most similar gallery rows of every query, by cosine similarity.

    Args:
        queries: (Q, D) or (D,) embeddings.
        gallery: (G, D) embeddings.
        top_k: neighbours per query; capped at G.
        backend: ``"torch"``, ``"faiss"`` or ``"auto"`` (faiss when importable).
        query_chunk, gallery_chunk: block sizes of the torch backend.
        device: torch device of the torch backend.

    Returns: ``(scores (Q, k) float32, indices (Q, k) int64)``, best first.
    """
    q = _as_matrix(queries, "queries")
    g = _as_matrix(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[1]} but the gallery has dimension {g.shape[1]}"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, len(g))
    if backend == "auto":
        backend = "faiss" if faiss_available() else "torch"
    if backend == "faiss":
        return _faiss_search(_normalise(q), _normalise(g), k)
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    return _torch_search(q, g, k, query_chunk, gallery_chunk, torch.device(device))


def _faiss_search(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError as exc:
        raise ValueError("backend='faiss' needs faiss (pip install faiss-cpu)") from exc
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(np.ascontiguousarray(g))
    scores, indices = index.search(np.ascontiguousarray(q), k)
    return scores.astype(np.float32), indices.astype(np.int64)


@torch.inference_mode()
def _torch_search(
    q: np.ndarray,
    g: np.ndarray,
    k: int,
    query_chunk: int,
    gallery_chunk: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    gallery = F.normalize(torch.from_numpy(g), dim=1)
    out_scores = np.empty((len(q), k), dtype=np.float32)
    out_idx = np.empty((len(q), k), dtype=np.int64)
    for qs in range(0, len(q), query_chunk):
        qb = F.normalize(torch.from_numpy(q[qs : qs + query_chunk]), dim=1).to(device)
        best_s = torch.full((len(qb), 0), float("-inf"), device=device)
        best_i = torch.zeros((len(qb), 0), dtype=torch.int64, device=device)
        for gs in range(0, len(g), gallery_chunk):
            gb = gallery[gs : gs + gallery_chunk].to(device)
            sims = qb @ gb.T
            s, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
            best_s = torch.cat([best_s, s], dim=1)
            best_i = torch.cat([best_i, i + gs], dim=1)
            if best_s.shape[1] > k:
                best_s, pos = torch.topk(best_s, k, dim=1)
                best_i = torch.gather(best_i, 1, pos)
        out_scores[qs : qs + len(qb)] = best_s.cpu().numpy()
        out_idx[qs : qs + len(qb)] = best_i.cpu().numpy()
    return out_scores, out_idx
