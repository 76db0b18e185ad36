"""Exact cosine search and closed-set identification."""

from __future__ import annotations

import numpy as np
import pytest

from marginface.evaluation.identification import (
    first_image_split,
    identification_metrics,
    probe_ranks,
)
from marginface.inference.search import cosine_search, faiss_available


def test_torch_search_matches_brute_force_with_small_chunks():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 5)).astype(np.float32)
    g = rng.normal(size=(23, 5)).astype(np.float32) * rng.uniform(0.5, 3, size=(23, 1))
    scores, idx = cosine_search(q, g, top_k=4, backend="torch", query_chunk=3, gallery_chunk=4)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = qn @ gn.T
    ref = np.argsort(-sims, axis=1)[:, :4]
    assert idx.shape == (7, 4) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, ref, 1), atol=1e-5)


def test_search_caps_k_and_accepts_one_query():
    g = np.eye(3, dtype=np.float32)
    scores, idx = cosine_search(np.array([0.0, 2.0, 0.1]), g, top_k=10, backend="torch")
    assert idx.tolist()[0][0] == 1 and idx.shape == (1, 3)
    assert scores[0, 0] == pytest.approx(2 / np.hypot(2, 0.1), abs=1e-6)


def test_search_errors():
    with pytest.raises(ValueError, match="dimension 3 but the gallery has dimension 4"):
        cosine_search(np.ones((2, 3)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="backend"):
        cosine_search(np.ones((2, 3)), np.ones((5, 3)), backend="annoy")


@pytest.mark.skipif(faiss_available(), reason="faiss is installed")
def test_faiss_backend_without_faiss_is_a_clear_error():
    with pytest.raises(ValueError, match="faiss-cpu"):
        cosine_search(np.ones((2, 3)), np.ones((5, 3)), backend="faiss")


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_faiss_matches_torch():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(6, 8)), rng.normal(size=(50, 8))
    s1, i1 = cosine_search(q, g, 5, backend="torch")
    s2, i2 = cosine_search(q, g, 5, backend="faiss")
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_first_image_split():
    g, p = first_image_split([3, 3, 1, 3, 1, 7])
    assert g.tolist() == [0, 2, 5] and p.tolist() == [1, 3, 4]


def test_ranks_and_cmc_by_hand():
    # gallery identities on the axes of R^3 (identity 2 has two gallery images)
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=np.float32)
    gallery_labels = [0, 1, 2, 2]
    probes = np.array(
        [
            [0.9, 0.1, 0.0],  # id 0: nearest is id 0 -> rank 1
            [0.0, 1.0, 0.1],  # id 2: id 1 (.995) beats id 2 (.796, its 2nd image) -> 2
            [0.5, 0.0, 0.4],  # id 1: id 0 (.78) and id 2 (.62) beat id 1 (0) -> 3
            [0.2, 0.2, 0.2],  # id 5: not in the gallery
        ],
        dtype=np.float32,
    )
    probe_labels = [0, 2, 1, 5]
    assert probe_ranks(gallery, gallery_labels, probes, probe_labels).tolist() == [1, 2, 3, 0]
    with pytest.warns(UserWarning, match="1 probes have no gallery image"):
        m = identification_metrics(gallery, gallery_labels, probes, probe_labels)
    assert m["rank1"] == pytest.approx(1 / 3)
    assert m["rank5"] == pytest.approx(1.0)
    assert m["cmc"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert m["num_gallery_identities"] == 3 and m["num_probes"] == 3
    assert m["num_probes_without_gallery"] == 1


def test_ties_count_for_the_probe():
    gallery = np.array([[1, 0], [1, 0]], dtype=np.float32)
    ranks = probe_ranks(gallery, [0, 1], np.array([[1, 0]], dtype=np.float32), [1])
    assert ranks.tolist() == [1]


def test_probe_ranks_within_a_memory_bound_equal_the_whole_chunk():
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(300, 8)).astype(np.float32)
    gallery_labels = rng.integers(0, 60, 300)
    probes = rng.normal(size=(50, 8)).astype(np.float32)
    probe_labels = rng.integers(0, 70, 50)  # some without a gallery image: rank 0
    whole = probe_ranks(gallery, gallery_labels, probes, probe_labels)
    one_at_a_time = probe_ranks(gallery, gallery_labels, probes, probe_labels, memory=1)
    assert (whole == 0).any() and whole.max() > 1
    np.testing.assert_array_equal(one_at_a_time, whole)
