"""``--threshold-grid insightface``: the accuracy InsightFace's ``calculate_roc`` reports.

The reference below is written from InsightFace's ``recognition/arcface_torch/eval/
verification.py`` as published (not copied): L2-normalise, squared distances of the pair's two
embeddings, thresholds ``np.arange(0, 4, 0.01)``, ``KFold(n_splits=10, shuffle=False)``, per fold
the first threshold of best train accuracy (``np.argmax``), predict same when ``dist < t``.
"""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from marginface.cli import main
from marginface.evaluation.embed import pair_scores
from marginface.evaluation.metrics import (
    insightface_kfold_accuracy,
    kfold_accuracy,
    verification_metrics,
)


def insightface_reference(embeddings: np.ndarray, issame: np.ndarray, n_folds: int = 10):
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    a, b = embeddings[0::2], embeddings[1::2]
    dist = np.sum(np.square(a - b), axis=1)
    thresholds = np.arange(0, 4, 0.01)

    def accuracy(t, d, same):
        predict = np.less(d, t)
        tp = np.sum(np.logical_and(predict, same))
        tn = np.sum(np.logical_and(~predict, ~same))
        return float(tp + tn) / d.size

    accs = []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(dist))):
        train_acc = [accuracy(t, dist[train], issame[train]) for t in thresholds]
        best = int(np.argmax(train_acc))
        accs.append(accuracy(thresholds[best], dist[test], issame[test]))
    return accs


def synthetic_pairs(n_pairs: int = 6000, dim: int = 64, seed: int = 0):
    """Genuine pairs share an identity vector plus noise; impostors do not; alternating."""
    rng = np.random.default_rng(seed)
    issame = np.arange(n_pairs) % 2 == 0
    a = rng.normal(size=(n_pairs, dim))
    b = np.where(issame[:, None], a, rng.normal(size=(n_pairs, dim)))
    a = a + rng.normal(scale=1.3, size=a.shape)
    b = b + rng.normal(scale=1.3, size=b.shape)
    embeddings = np.empty((2 * n_pairs, dim))
    embeddings[0::2], embeddings[1::2] = a, b
    return embeddings, issame


def test_insightface_grid_agrees_exactly_with_insightface():
    embeddings, issame = synthetic_pairs()
    expected = insightface_reference(embeddings, issame)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = pair_scores(unit)  # the cosines marginface eval scores pairs by
    mean, std, accs, thresholds = insightface_kfold_accuracy(scores, issame)
    assert accs == expected  # fold by fold, to the last bit
    assert mean == np.mean(expected) and std == np.std(expected)
    # the fold thresholds are grid points, given as cosines 1 - t / 2
    assert all(abs(round((1 - c) * 2 / 0.01) * 0.01 - (1 - c) * 2) < 1e-12 for c in thresholds)
    # the exact rule, on the same scores, is another number: the option matters
    exact = kfold_accuracy(scores, issame)[0]
    assert exact != mean
    metrics = verification_metrics(scores, issame, threshold_grid="insightface")
    assert metrics["accuracy"] == mean and metrics["threshold_grid"] == "insightface"
    with pytest.raises(ValueError, match="threshold_grid"):
        verification_metrics(scores, issame, threshold_grid="coarse")


def test_eval_cli_threshold_grid(trained_run, tmp_path, capsys):
    import json

    out = {}
    for grid in ("exact", "insightface"):
        argv = ["eval", "--checkpoint", str(trained_run), "--pairs", "synthetic:6x4,first=700",
                "--output", str(tmp_path / grid), "--quiet", "--threshold-grid", grid]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        out[grid] = json.loads((tmp_path / grid / "metrics.json").read_text())["synthetic"]
    assert out["insightface"]["threshold_grid"] == "insightface"
    # same pairs, same scores: only the accuracy's thresholds differ
    assert out["insightface"]["auc"] == out["exact"]["auc"]
    assert "InsightFace's grid" in (tmp_path / "insightface" / "report.md").read_text()
