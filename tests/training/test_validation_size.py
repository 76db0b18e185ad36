"""Validation sized by time: the generated pairs cut to a prefix whose distinct images fit the
budget (VAL_SHARE of an epoch), and the progress bar's time left counting the validations."""

import numpy as np
import pytest

from _support.training import TINY, read_jsonl
from marginface.training import validation as val
from marginface.training.eta import Eta, clock, validations_left


def test_budget_rule():
    # 1095 training images, one validation per epoch: 15% of the epoch at 2/3 per image
    assert val.image_budget(1095, 1) == int(0.15 * 1095 / (2 / 3)) == 246
    assert val.image_budget(1095, 4) == 61  # four validations an epoch share it


def test_fit_keeps_a_balanced_prefix_within_the_budget():
    v = val.Validator(["synthetic:60x8,first=500"], 16, max_pairs=3000)
    (_, before), n_before = v.sets[0], len(v.sets[0][1])
    assert val.distinct_count(before.images) == 480 and n_before > 2000
    (entry,) = v.fit(300)
    (_, after) = v.sets[0]
    assert entry["cut"] and entry["pairs"] == len(after) < n_before
    assert entry["images"] == val.distinct_count(after.images) <= 300
    assert np.array_equal(after.issame, before.issame[: len(after)])  # the first pairs
    assert abs(int(after.issame.sum()) - len(after) / 2) <= 1  # genuine/impostor alternate
    # one more pair would pass the budget (the prefix is the longest that fits)
    idx = before.images.indices[: 2 * (len(after) + 1)]
    assert len(np.unique(idx)) > 300
    # never fewer than MIN_PAIRS pairs
    v = val.Validator(["synthetic:60x8,first=500"], 16, max_pairs=3000)
    (entry,) = v.fit(10)
    assert entry["pairs"] == val.MIN_PAIRS


def test_train_sizes_generated_pairs_unless_max_pairs_given(cli, tmp_path):
    pairs = ["--pairs", "synthetic:30x6,first=100"]
    out = tmp_path / "auto"
    assert cli(*TINY, "--epochs", "1", *pairs, "--output", out) == 0
    (event,) = [r for r in read_jsonl(out / "log.jsonl") if r.get("event") == "validation_size"]
    assert event["budget"] == val.image_budget(32, 1) == 7  # 32 training images an epoch
    assert event["cut"] and event["pairs"] == val.MIN_PAIRS  # the floor, with 7 images' budget
    out = tmp_path / "fixed"
    assert cli(*TINY, "--epochs", "1", *pairs, "--max-pairs", "50", "--output", out) == 0
    events = [r for r in read_jsonl(out / "log.jsonl") if r.get("event") == "validation_size"]
    assert events == []
    val_records = [r for r in read_jsonl(out / "log.jsonl") if r["type"] == "val"]
    assert len(val_records) == 1


def test_validations_left():
    assert validations_left(3, 10, 0, 5, 0) == 5  # one per epoch, this one included
    assert validations_left(3, 10, 2, 5, 0) == 3
    assert validations_left(3, 10, 0, 5, 4) == 2 + 1  # steps 4 and 8, then the end (10)
    assert validations_left(3, 12, 0, 5, 4) == 3  # 4, 8, 12 (the end is one of them)


def test_eta_counts_validations():
    eta = Eta()
    assert clock(eta.left(10, 1, 100, 10)) == "?"
    for s in (1.0, 1.0, 5.0):  # median 1 s per step of 10 images
        eta.step(s)
    # before any validation: 100 images at 2/3 of a training image (0.1 s) each
    assert eta.left(10, 2, 100, 10) == pytest.approx(10 * 1.0 + 2 * 100 * (2 / 3) * 0.1)
    eta.validation(30.0)
    assert eta.left(10, 2, 100, 10) == pytest.approx(10 + 60)
    assert clock(3725) == "1:02:05" and clock(65) == "01:05"
