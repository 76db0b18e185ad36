"""Gallery indexes: exact equals cosine_search; the approximate kinds' recall@1 against exact
search on a small clustered gallery; the choice of ``auto``; errors. Queries/s and recall at 1M
and 10M rows are measured by benchmarks/search_scale.py, not here."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.inference import index as index_module
from marginface.inference.index import build_index, choose_kind
from marginface.inference.search import cosine_search, faiss_available

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


def gallery_and_queries(rows=4000, dim=32, queries=200, seed=0):
    """Queries are noisy copies of gallery rows (a face searched for its own identity)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(rows, dim)).astype(np.float32)
    source = rng.choice(rows, queries, replace=False)
    q = g[source] + 0.3 * rng.normal(size=(queries, dim)).astype(np.float32)
    return g, q


def recall_at_1(found, g, q):
    _, exact = cosine_search(q, g, top_k=1, backend="torch")
    return float(np.mean(found[:, 0] == exact[:, 0]))


def test_exact_index_equals_cosine_search():
    g, q = gallery_and_queries(rows=300)
    index = build_index(g, kind="exact", backend="torch")
    scores, found = index.search(q, top_k=4)
    ref_scores, ref = cosine_search(q, g, top_k=4, backend="torch")
    np.testing.assert_array_equal(found, ref)
    np.testing.assert_array_equal(scores, ref_scores)
    assert index.kind == "exact" and index.size == 300 and index.dim == 32


@needs_faiss
def test_hnsw_recall():
    g, q = gallery_and_queries()
    index = build_index(g, kind="hnsw")
    scores, found = index.search(q, top_k=5)
    assert found.shape == (200, 5) and scores.dtype == np.float32
    # the query's source row is far nearer than any other (noise 0.3 x sqrt(32) vs rows
    # sqrt(2 x 32) apart): a graph search with efSearch 128 over 4,000 rows finds nearly all
    assert recall_at_1(found, g, q) >= 0.97
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


@needs_faiss
def test_ivfpq_recall():
    g, q = gallery_and_queries(rows=10_000)
    index = build_index(g, kind="ivfpq", cells=64, code_bytes=8, probes=8, train_rows=4096)
    assert index.params == {"cells": 64, "probes": 8, "code_bytes": 8}
    _, found = index.search(q, top_k=1)
    # compressed to 8 bytes of 128 and 8 of 64 cells visited: most, not all, found
    assert recall_at_1(found, g, q) >= 0.85


def test_auto_chooses_by_size(monkeypatch):
    monkeypatch.setattr(index_module, "APPROXIMATE_ABOVE", 1000)
    assert choose_kind(1000, 512, have_faiss=True) == "exact"
    assert choose_kind(1001, 512, have_faiss=True) == "hnsw"
    assert choose_kind(10_000_000, 512, have_faiss=True) == "ivfpq"
    with pytest.warns(UserWarning, match="install faiss-cpu"):
        assert choose_kind(1001, 512, have_faiss=False) == "exact"


def test_errors(monkeypatch):
    g, q = gallery_and_queries(rows=300)
    with pytest.raises(ValueError, match="index kind must be one of"):
        build_index(g, kind="annoy")
    with pytest.raises(ValueError, match="dimension 8 but the gallery has dimension 32"):
        build_index(g, kind="exact").search(np.ones((2, 8)))
    with pytest.raises(ValueError, match="non-finite"):
        build_index(np.full((3, 4), np.nan), kind="exact")
    if faiss_available():
        with pytest.raises(ValueError, match="needs at least 256 gallery rows"):
            build_index(g[:100], kind="ivfpq", cells=16)
    monkeypatch.setattr(index_module, "faiss_available", lambda: False)
    with pytest.raises(ValueError, match=r"needs faiss \(pip install faiss-cpu\)"):
        build_index(g, kind="hnsw")


@needs_faiss
def test_an_index_filled_block_by_block_equals_one_built_whole():
    from marginface.inference.index import approximate_index

    g, q = gallery_and_queries(rows=2000)
    whole = build_index(g, kind="hnsw")
    blocks = approximate_index("hnsw", 32, 2000)
    with pytest.raises(ValueError, match="the index is empty"):
        blocks.search(q)
    for start in range(0, 2000, 300):
        blocks.add(g[start : start + 300])
    assert blocks.size == 2000
    # (a graph built by several threads depends on their timing: recall, not identity)
    assert recall_at_1(blocks.search(q, 1)[1], g, q) >= 0.97
    assert recall_at_1(whole.search(q, 1)[1], g, q) >= 0.97
    with pytest.raises(ValueError, match=r"rows must be \(N, 32\)"):
        blocks.add(np.ones((2, 8)))
