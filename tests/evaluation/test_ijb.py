"""IJB-B/C 1:1 template verification against InsightFace's eval_ijbc.py.

The fixture ``ijb_insightface.npz`` holds generated features and metadata and what InsightFace's
own code computed from them (``ijb_reference.py`` recorded it, running eval_ijbc.py's statements
from a copy outside the project). Set ``INSIGHTFACE_EVAL_IJBC`` to such a copy to also run it
live. InsightFace computes in float32, marginface in float64: scores agree to float32 rounding
(relative 6e-8 per operation, a few hundred operations per score: 1e-6 is ample), and the
TAR@FAR row as InsightFace prints it ('%.2f' percent) must be the same string.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _support.ijb_reference import FIXTURE, generate, run_insightface
from marginface.evaluation.ijb import (
    nearest_far_tar,
    read_ijb_meta,
    template_features,
    template_pair_scores,
)


def ours(case):
    features = case["features"].astype(np.float64) + case["flipped"]
    feats, ids = template_features(features, case["templates"], case["medias"], case["faceness"])
    scores = template_pair_scores(feats, ids, case["pairs"])
    tar = nearest_far_tar(scores, case["labels"].astype(bool))
    return scores, ["%.2f" % (100 * t) for _, t in sorted(tar.items())]


def check(case, reference):
    scores, row = ours(case)
    np.testing.assert_allclose(scores, reference["insightface_scores"], rtol=0, atol=1e-6)
    assert row == [str(v) for v in reference["insightface_tar_row"]]


def test_template_verification_matches_insightface_fixture():
    with np.load(FIXTURE) as data:
        recorded = dict(data)
    case = generate()
    for key, value in case.items():  # the generator still makes what was recorded
        np.testing.assert_array_equal(value, recorded[key])
    check(case, recorded)


@pytest.mark.skipif(
    not os.environ.get("INSIGHTFACE_EVAL_IJBC"), reason="INSIGHTFACE_EVAL_IJBC not set"
)
def test_template_verification_matches_insightface_live():
    case = generate(seed=1)
    check(case, run_insightface(os.environ["INSIGHTFACE_EVAL_IJBC"], case))


def test_media_pooling_and_faceness_by_hand():
    # template 7: media 1 (two images) and media 2 (one image); template 9: one image
    f = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    feats, ids = template_features(f, np.array([7, 7, 7, 9]), np.array([1, 1, 2, 3]))
    # mean of media 1 = (2, 0), plus media 2 = (0, 2): (2, 2) / |(2, 2)|
    np.testing.assert_allclose(feats[0], [2**-0.5, 2**-0.5])
    assert ids.tolist() == [7, 9]
    weighted, _ = template_features(f, np.array([7, 7, 7, 9]), np.array([1, 1, 2, 3]),
                                    faceness=np.array([1.0, 1.0, 0.5, 1.0]))  # fmt: skip
    np.testing.assert_allclose(weighted[0], np.array([2.0, 1.0]) / np.sqrt(5))
    assert template_pair_scores(feats, ids, np.array([[7, 9]]))[0] == pytest.approx(1.0)


def write_ijb(root: Path, case_images: int = 0) -> None:
    """A tiny IJB-C layout: loose crops of synthetic faces with their 5 points."""
    from marginface.data import open_dataset

    data = open_dataset("synthetic:4x4,first=300", image_size=64)
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    names, tid = [], []
    for i in range(len(data)):
        picture, marks = data.render(i, with_landmarks=True)
        name = f"{i}.jpg"
        picture.save(root / "loose_crop" / name, quality=95)
        numbers = " ".join(f"{v:.3f}" for v in np.asarray(marks).reshape(-1))
        names.append(f"{name} {numbers} 0.9{i % 10}")
        label = int(data.labels[i])
        tid.append(f"{name} {100 + 2 * label + i % 2} {i // 2}")
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(names) + "\n")
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("\n".join(tid) + "\n")
    pairs = [f"{100 + 2 * p} {101 + 2 * p} 1" for p in range(4)]
    pairs += [f"{100 + 2 * p} {101 + 2 * q} 0" for p in range(4) for q in range(4) if p != q]
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("\n".join(pairs) + "\n")


def test_eval_ijb_cli(trained_run, tmp_path, capsys):
    import json

    from marginface.cli import main

    root = tmp_path / "IJBC"
    write_ijb(root)
    meta = read_ijb_meta(root)
    assert meta.target == "IJBC" and len(meta.names) == 16 and meta.labels.sum() == 4
    assert Image.open(root / "loose_crop" / meta.names[0]).size == (64, 64)
    out = tmp_path / "eval"
    code = main(["eval", "--checkpoint", str(trained_run), "--ijb", str(root), "--output",
                 str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "IJBC 1:1" in stdout and "TAR@1e-04" in stdout
    metrics = json.loads((out / "metrics.json").read_text())["IJBC"]
    assert metrics["num_pairs"] == 16 and metrics["num_templates"] == 8
    assert set(metrics["tar_at_far"]) == {"1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"}
