"""Verification metrics on cases worked out by hand, and against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold

from marginface.evaluation.metrics import (
    best_threshold,
    equal_error_rate,
    fold_indices,
    jsonable_metrics,
    kfold_accuracy,
    verification_metrics,
)

T, F = True, False


def test_best_threshold_two_way_tie_takes_lower_middle():
    # candidates -0.9, .15, .25, .35, 1.4 give 2, 3, 2, 3, 2 correct: tie between .15 and .35
    thr, acc = best_threshold([0.1, 0.2, 0.3, 0.4], [F, T, F, T])
    assert thr == pytest.approx(0.15)
    assert acc == pytest.approx(0.75)


def test_best_threshold_three_way_tie_takes_middle():
    # 4 correct at .15, .35 and .55 (3 elsewhere): the middle one
    thr, acc = best_threshold([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [F, T, F, T, F, T])
    assert thr == pytest.approx(0.35)
    assert acc == pytest.approx(4 / 6)


def test_equal_scores_are_never_split():
    # the three 0.5 pairs (one genuine, two impostor) fall on one side: best is .7, 3/4 right
    thr, acc = best_threshold([0.5, 0.5, 0.5, 0.9], [T, F, F, T])
    assert thr == pytest.approx(0.7)
    assert acc == pytest.approx(0.75)


def test_best_threshold_edges_accept_all_and_reject_all():
    assert best_threshold([0.2, 0.4], [T, T]) == (pytest.approx(-0.8), 1.0)
    assert best_threshold([0.2, 0.4], [F, F]) == (pytest.approx(1.4), 1.0)


def test_fold_indices_in_order_like_sklearn_kfold():
    folds = fold_indices(7, 3)
    assert [f.tolist() for f in folds] == [[0, 1, 2], [3, 4], [5, 6]]
    ref = [test.tolist() for _, test in KFold(3, shuffle=False).split(np.zeros(7))]
    assert [f.tolist() for f in folds] == ref


# fold A = first four pairs, fold B = last four
FOLD_SCORES = [0.9, 0.1, 0.6, 0.4, 0.8, 0.7, 0.3, 0.2]
FOLD_SAME = [T, F, T, F, T, F, T, F]


def test_kfold_accuracy_by_hand():
    # test A, train B: B's ties (.25, .75) -> .25; on A only 0.4 (impostor) is wrong -> 3/4.
    # test B, train A: A is separable, threshold .5; on B 0.7 (imp) and 0.3 (gen) wrong -> 1/2.
    mean, std, accs, thresholds = kfold_accuracy(FOLD_SCORES, FOLD_SAME, n_folds=2)
    assert thresholds == pytest.approx([0.25, 0.5])
    assert accs == pytest.approx([0.75, 0.5])
    assert mean == pytest.approx(0.625)
    assert std == pytest.approx(0.125)


def test_folds_are_taken_in_order_not_shuffled():
    # the same pairs in another order: A = .9T .1F .8T .2F, B = .6T .4F .7F .3T.
    # train B: 2/4 right at -.7 (accept all), .5 and 1.7 -> middle .5; A all right -> 1.
    # train A: .5; on B .7 (imp) and .3 (gen) wrong -> 1/2.  Mean .75, not .625.
    order = [0, 1, 4, 7, 2, 3, 5, 6]
    mean, _, accs, thresholds = kfold_accuracy(
        [FOLD_SCORES[i] for i in order], [FOLD_SAME[i] for i in order], n_folds=2
    )
    assert thresholds == pytest.approx([0.5, 0.5])
    assert accs == pytest.approx([1.0, 0.5])
    assert mean == pytest.approx(0.75)


def test_verification_metrics_by_hand():
    m = verification_metrics(FOLD_SCORES, FOLD_SAME, n_folds=2)
    assert m["accuracy"] == pytest.approx(0.625)
    assert m["accuracy_std"] == pytest.approx(0.125)
    # on all 8 pairs, .3, .5 and .75 each give 6/8; the middle one is .5
    assert m["best_threshold"] == pytest.approx(0.5)
    # AUC: of the 16 genuine/impostor pairs, 13 are ordered right
    assert m["auc"] == pytest.approx(13 / 16)
    assert m["tar_at_far"] == {}  # 4 impostors cannot resolve FAR <= 0.1
    assert (m["num_pairs"], m["num_genuine"], m["num_impostor"]) == (8, 4, 4)


def test_eer_by_hand():
    # ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FAR = FRR = 0.5 at the third
    m = verification_metrics([0.1, 0.2, 0.3, 0.4], [F, T, F, T], n_folds=2)
    assert m["eer"] == pytest.approx(0.5)
    perfect = verification_metrics([0.1, 0.8, 0.2, 0.9], [F, T, F, T], n_folds=2)
    assert perfect["eer"] == 0.0 and perfect["auc"] == 1.0 and perfect["accuracy"] == 1.0
    # linear interpolation between ROC points: FAR 0 -> .5 while FRR stays 1/3 on one segment
    fpr = np.array([0.0, 0.0, 0.5, 1.0])
    tpr = np.array([0.0, 2 / 3, 2 / 3, 1.0])
    assert equal_error_rate(fpr, tpr) == pytest.approx(1 / 3)


def test_tar_at_far_only_resolvable_fars():
    rng = np.random.default_rng(0)
    issame = np.array([T] * 50 + [F] * 1000)
    scores = np.where(issame, rng.normal(0.6, 0.2, 1050), rng.normal(0.0, 0.2, 1050))
    m = verification_metrics(scores, issame)
    assert sorted(m["tar_at_far"]) == [1e-3, 1e-2, 1e-1]  # 1000 impostors: down to 1e-3


def _brute_tar(scores, issame, far):
    best = 0.0
    n_imp = (~issame).sum()
    for t in np.unique(scores):
        accept = scores >= t
        if (accept & ~issame).sum() / n_imp <= far:
            best = max(best, (accept & issame).sum() / issame.sum())
    return best


def test_matches_sklearn_roc_and_brute_force():
    rng = np.random.default_rng(1)
    issame = rng.random(3000) < 0.5
    scores = np.round(np.where(issame, rng.normal(0.5, 0.25, 3000), rng.normal(0, 0.25, 3000)), 3)
    m = verification_metrics(scores, issame)
    assert m["auc"] == pytest.approx(roc_auc_score(issame, scores), abs=1e-12)
    for far, tar in m["tar_at_far"].items():
        assert tar == pytest.approx(_brute_tar(scores, issame, far))
    fpr, tpr, _ = roc_curve(issame, scores)
    frr = 1 - tpr
    i = np.argmin(np.abs(fpr - frr))
    assert m["eer"] == pytest.approx((fpr[i] + frr[i]) / 2, abs=2e-3)
    assert len(m["fold_accuracies"]) == 10 and 0.8 < m["accuracy"] < 1.0
    # each fold threshold is best on the other folds, checked against a brute-force search
    for k, test in enumerate(fold_indices(3000, 10)):
        train = np.setdiff1d(np.arange(3000), test)
        accs = [np.mean((scores[train] >= t) == issame[train]) for t in np.unique(scores)]
        got = np.mean((scores[train] >= m["fold_thresholds"][k]) == issame[train])
        assert got == pytest.approx(max(accs))


def test_json_keys():
    rng = np.random.default_rng(2)
    issame = np.arange(200) % 2 == 0
    m = jsonable_metrics(verification_metrics(rng.random(200) + issame, issame))
    assert list(json.loads(json.dumps(m))["tar_at_far"]) == ["1e-02", "1e-01"]


@pytest.mark.parametrize(
    "scores, issame, match",
    [
        ([0.1, 0.2], [T, T], "both genuine and impostor"),
        ([0.1, np.nan, 0.3], [T, F, T], "not finite"),
        ([0.1, 0.2, 0.3], [T, F], "3 entries but issame has 2"),
        ([0.1, 0.2, 0.3], [T, F, 2], "booleans"),
    ],
)
def test_bad_input(scores, issame, match):
    with pytest.raises(ValueError, match=match):
        verification_metrics(scores, issame, n_folds=2)


def test_too_few_pairs_for_folds():
    with pytest.raises(ValueError, match="3 pairs cannot be split into n_folds=10"):
        verification_metrics([0.1, 0.2, 0.3], [T, F, T])
