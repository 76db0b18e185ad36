"""IJB scoring at benchmark scale: the streamed scorer (sparse template pooling, pairs scored in
blocks, the pair list parsed in blocks) equals the straightforward in-memory definition, and the
pair list's errors name the file and the line. Memory and time at IJB-C's counts are measured by
benchmarks/ijb_scale.py, not here."""

import numpy as np
import pytest

from marginface.evaluation import ijb
from marginface.evaluation.ijb import read_ijb_meta, template_features, template_pair_scores


def in_memory(features, templates, medias, faceness, pairs):
    """The protocol's definition, written out loop by loop (the scorer before streaming)."""
    features = features * faceness[:, None]
    unique = np.unique(templates)
    out = np.zeros((len(unique), features.shape[1]))
    for row, template in enumerate(unique):
        mine = templates == template
        for m in np.unique(medias[mine]):
            out[row] += features[mine][medias[mine] == m].mean(axis=0)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    position = {int(t): i for i, t in enumerate(unique)}
    first = np.array([position[int(t)] for t in pairs[:, 0]])
    second = np.array([position[int(t)] for t in pairs[:, 1]])
    return np.sum(out[first] * out[second], axis=1)


def protocol(seed=0, images=600, templates=40, dim=16, pairs=500):
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(10**12, 10**12 + 10**6), templates, replace=False)
    tid = ids[rng.integers(0, templates, images)]
    mid = rng.integers(0, 7, images) + 1000 * (tid % 5)  # media ids shared across templates
    feats = rng.normal(size=(images, dim))
    faceness = rng.uniform(0.5, 1.0, images)
    used = np.unique(tid)
    pair = rng.choice(used, size=(pairs, 2))
    return feats, tid, mid, faceness, pair


@pytest.mark.parametrize("block", [1, 7, 1 << 16])
def test_streamed_scorer_equals_the_in_memory_definition(block):
    feats, tid, mid, faceness, pairs = protocol()
    expected = in_memory(feats, tid, mid, faceness, pairs)
    pooled, ids = template_features(feats.astype(np.float32), tid, mid, faceness)
    got = template_pair_scores(pooled, ids, pairs, block=block)
    # float64 sums of at most 600 terms of size ~4 (features from float32: rounding 6e-8
    # relative each), then cosines of unit vectors: 1e-6 is far above the rounding, far below
    # any score difference that could move a ROC point
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    pooled64, _ = template_features(feats, tid, mid, faceness)
    np.testing.assert_allclose(
        template_pair_scores(pooled64, ids, pairs, block=block), expected, rtol=0, atol=1e-12
    )


def test_a_pair_naming_a_template_without_features_is_refused():
    feats, tid, mid, faceness, pairs = protocol()
    pooled, ids = template_features(feats, tid, mid, faceness)
    bad = pairs.copy()
    bad[3, 1] = 5
    with pytest.raises(ValueError, match=r"without features: \[5\]"):
        template_pair_scores(pooled, ids, bad)


def write_meta(root, pair_lines):
    meta = root / "meta"
    meta.mkdir(parents=True)
    marks = " ".join(["1"] * 10)
    (meta / "ijbc_name_5pts_score.txt").write_text(f"a.jpg {marks} 0.9\nb.jpg {marks} 0.8\n")
    (meta / "ijbc_face_tid_mid.txt").write_text("a.jpg 11 1\nb.jpg 12 2\n")
    (meta / "ijbc_template_pair_label.txt").write_text(pair_lines)


def test_the_pair_list_is_read_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(ijb, "TABLE_BLOCK_LINES", 1)  # a block of 16 bytes: about a line
    lines = [f"{11 + i % 2} {12 - i % 2} {i % 2}" for i in range(50)]
    write_meta(tmp_path, "\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]) + "\n")
    meta = read_ijb_meta(tmp_path)
    assert meta.pairs.shape == (50, 2) and meta.labels.tolist() == [i % 2 for i in range(50)]
    assert meta.pairs[:2].tolist() == [[11, 12], [12, 11]]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("11 12\n", r"line 2: expected 3 fields, got 2"),
        ("11 x 1\n", r"row 2: 'x' is not an integer id"),
        ("11 100000000000000000000 1\n", r"row 2: '100000000000000000000' is not an integer id"),
    ],
)
def test_a_bad_pair_line_is_named(tmp_path, monkeypatch, bad, message):
    monkeypatch.setattr(ijb, "TABLE_BLOCK_LINES", 1)
    write_meta(tmp_path, "11 12 0\n" + bad + "12 11 0\n")
    with pytest.raises(ValueError, match=r"ijbc_template_pair_label\.txt " + message):
        read_ijb_meta(tmp_path)


def test_an_empty_pair_list_is_refused(tmp_path):
    write_meta(tmp_path, "\n\n")
    with pytest.raises(ValueError, match="is empty"):
        read_ijb_meta(tmp_path)
