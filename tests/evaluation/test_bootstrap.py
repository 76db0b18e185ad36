"""The paired identity bootstrap: TAR@FAR under weights, resampling, verdicts."""

import numpy as np
import pytest

from marginface.evaluation.bootstrap import (
    grouped_tar_at_far,
    identity_counts,
    paired_bootstrap,
    verdict_of,
    weighted_tar_at_far,
)
from marginface.evaluation.metrics import roc, tar_at_far


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.1])
def test_unit_weights_give_the_metrics_tar(seed, far):
    rng = np.random.default_rng(seed)
    issame = rng.random(3000) < 0.4
    scores = rng.normal(issame * 1.5, 1.0)
    fpr, tpr, _ = roc(scores, issame)
    expected = tar_at_far(fpr, tpr, int((~issame).sum()), (far,))[far]
    got = weighted_tar_at_far(scores, issame, np.ones((1, len(scores))), far)[0]
    assert got == expected


def test_integer_weights_equal_repeating_the_pairs():
    rng = np.random.default_rng(3)
    issame = rng.random(400) < 0.5
    scores = rng.normal(issame * 1.0, 1.0)
    w = rng.integers(0, 4, size=400)
    repeated_s, repeated_y = np.repeat(scores, w), np.repeat(issame, w)
    fpr, tpr, _ = roc(repeated_s, repeated_y)
    expected = tar_at_far(fpr, tpr, int((~repeated_y).sum()), (0.05,))[0.05]
    assert weighted_tar_at_far(scores, issame, w[None, :], 0.05)[0] == pytest.approx(expected)


def test_identity_counts_draw_whole_identities():
    groups = np.array([5, 5, 7, 9, 9, 9])
    counts, index = identity_counts(groups, replicates=50, seed=1)
    assert counts.shape == (50, 3) and (counts.sum(axis=1) == 3).all()
    w = counts[:, index]
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()  # a group moves as one
    again, _ = identity_counts(groups, replicates=50, seed=1)
    assert (again == counts).all()


def test_verdicts_from_the_interval_alone():
    assert verdict_of(0.01, 0.2) == "ahead"
    assert verdict_of(-0.2, -0.01) == "behind"
    assert verdict_of(-0.01, 0.2) == "within noise"


def _pairs(n_ids=60, per=40, seed=0):
    rng = np.random.default_rng(seed)
    issame = np.tile([True, False], n_ids * per // 2)
    groups = np.repeat(np.arange(n_ids), per)
    return rng, issame, groups


def test_a_clearly_better_model_is_ahead_and_the_reverse_behind():
    rng, issame, groups = _pairs()
    good = issame * 2.0 + rng.normal(0, 0.5, len(issame))
    bad = issame * 2.0 + rng.normal(0, 1.0, len(issame))
    r = paired_bootstrap(good, bad, issame, groups, far=1e-2, replicates=300)
    assert r["verdict"] == "ahead" and r["ci_low"] > 0 and r["difference"] == r["a"] - r["b"]
    r = paired_bootstrap(bad, good, issame, groups, far=1e-2, replicates=300)
    assert r["verdict"] == "behind" and r["ci_high"] < 0


def test_the_same_model_twice_is_within_noise_with_a_zero_width_interval():
    rng, issame, groups = _pairs()
    s = issame * 1.0 + rng.normal(0, 1.0, len(issame))
    r = paired_bootstrap(s, s.copy(), issame, groups, far=1e-2, replicates=100)
    assert r["ci_low"] == r["ci_high"] == r["difference"] == 0.0
    assert r["verdict"] == "within noise"


def test_identity_clusters_widen_the_interval():
    # each identity shifts all its genuine scores together: pairs are not independent, and
    # resampling identities must see a wider spread than resampling single pairs would
    rng, issame, groups = _pairs(n_ids=40, per=50, seed=4)
    shift = rng.normal(0, 1.0, 40)[groups]
    a = issame * (2.0 + shift) + rng.normal(0, 0.3, len(issame))
    b = issame * 2.0 + rng.normal(0, 0.3, len(issame))
    by_id = paired_bootstrap(a, b, issame, groups, far=1e-2, replicates=400)
    by_pair = paired_bootstrap(a, b, issame, np.arange(len(a)), far=1e-2, replicates=400)
    assert by_id["ci_high"] - by_id["ci_low"] > 2 * (by_pair["ci_high"] - by_pair["ci_low"])


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="of one length"):
        paired_bootstrap([1.0, 2.0], [1.0], [True, False], [0, 1], far=0.1)
    with pytest.raises(ValueError, match="both genuine and impostor"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0], [True, True], [0, 1], far=0.1)


def test_seed_rows_average_the_per_seed_tar():
    rng, issame, groups = _pairs(seed=5)
    a = issame * 2.0 + rng.normal(0, 0.6, (3, len(issame)))
    b = issame * 2.0 + rng.normal(0, 0.9, (3, len(issame)))
    r = paired_bootstrap(a, b, issame, groups, far=1e-2, replicates=50)
    singles = [
        paired_bootstrap(a[k], b[k], issame, groups, far=1e-2, replicates=2) for k in range(3)
    ]
    assert r["a"] == pytest.approx(np.mean([s["a"] for s in singles]))
    assert r["difference"] == pytest.approx(np.mean([s["difference"] for s in singles]))


def test_a_far_the_impostors_cannot_resolve_is_refused():
    rng, issame, groups = _pairs(n_ids=10, per=20)  # 100 impostor pairs
    s = issame * 1.0 + rng.normal(0, 1.0, len(issame))
    with pytest.raises(ValueError, match="not resolvable with 100 impostor pairs"):
        paired_bootstrap(s, s, issame, groups, far=1e-3)


def test_several_fars_in_one_pass_equal_one_at_a_time():
    rng, issame, groups = _pairs(seed=6)
    a = issame * 2.0 + rng.normal(0, 0.6, len(issame))
    b = issame * 2.0 + rng.normal(0, 0.9, len(issame))
    both = paired_bootstrap(a, b, issame, groups, far=(1e-2, 1e-1), replicates=60)
    for far in (1e-2, 1e-1):
        assert both[far] == paired_bootstrap(a, b, issame, groups, far=far, replicates=60)


def test_grouped_tar_reads_further_when_a_replicate_needs_it():
    """The identity-count form equals the explicit per-pair weights, also when a replicate's
    weight sits on the lowest impostors (the top slice read first holds none of it)."""
    rng = np.random.default_rng(3)
    n_imp, n_gen = 20_000, 500
    scores = np.r_[rng.normal(1.0, 0.5, n_gen), -np.arange(n_imp) / n_imp]
    issame = np.r_[np.ones(n_gen, bool), np.zeros(n_imp, bool)]
    index = np.r_[rng.integers(0, 20, n_gen), np.arange(n_imp) // 1000]  # by impostor rank
    counts = rng.integers(0, 3, size=(4, 20)).astype(float)
    counts[0, :18] = 0.0  # replicate 0: only the 2,000 lowest impostors count
    counts[0, 18:] = 1.0
    for far in (0.2, 1e-3):
        got = grouped_tar_at_far(scores, issame, counts, index, far)
        want = weighted_tar_at_far(scores, issame, counts[:, index], far)
        np.testing.assert_array_equal(got, want)
    # replicate 0 by hand: threshold at the 400th-highest of its 2,000 counted impostors
    v = np.sort(scores[n_gen:][index[n_gen:] >= 18])[::-1][400]
    gen_w = counts[0, index[:n_gen]]
    expected = (gen_w * (scores[:n_gen] > v)).sum() / gen_w.sum()
    assert grouped_tar_at_far(scores, issame, counts, index, 0.2)[0] == pytest.approx(expected)
