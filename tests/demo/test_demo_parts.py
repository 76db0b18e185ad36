"""The demo's parts: the image cache, the pairs, the angles, the toy statistics, the config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marginface.data import NO_TRANSFORMS, TRAINING_TRANSFORMS, open_dataset, open_pairs
from marginface.data.formats.verification import generate_pairs
from marginface.demo import cache as cache_module
from marginface.demo.cache import render_dataset
from marginface.demo.config import DemoConfig, make_config
from marginface.demo.progress import DemoProgress
from marginface.demo.runner import steps_of
from marginface.demo.sphere_plots import toy_statistics
from marginface.evaluation.angles import centre_angles

SPEC = "synthetic:5x4,first=300"


def test_cached_images_equal_the_rendered_dataset():
    cached = render_dataset(SPEC, image_size=20, workers=1)
    source = open_dataset(SPEC, image_size=20)
    assert len(cached) == len(source) == 20
    assert cached.num_classes == 5 and cached.identity_names == source.identity_names
    assert np.array_equal(cached.labels, source.labels)
    for i in (0, 7, 19):
        image, label = cached[i]
        expected, expected_label = source[i]
        assert label == expected_label
        assert image.dtype == torch.float32 and torch.equal(image, expected)
    batch = cached.images(np.array([3, 7]))
    assert torch.allclose(batch[1], source[7][0], atol=1e-6)


def test_pool_rendering_equals_in_process_rendering(monkeypatch):
    monkeypatch.setattr(cache_module, "_POOL_MIN_ITEMS", 1)
    monkeypatch.setattr(cache_module, "_CHUNK", 6)
    counted = []
    pooled = render_dataset(SPEC, image_size=16, workers=2, progress=counted.append)
    single = render_dataset(SPEC, image_size=16, workers=1)
    assert np.array_equal(pooled.pixels, single.pixels)
    assert sum(counted) == 20 and len(counted) == 4


def test_training_transforms_flip_some_items_and_only_flip():
    cached = render_dataset(SPEC, image_size=16, workers=1).with_transforms(TRAINING_TRANSFORMS)
    plain = cached.with_transforms(NO_TRANSFORMS)
    torch.manual_seed(0)
    flipped = 0
    for i in range(len(cached)):
        a, b = cached[i][0], plain[i][0]
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
        flipped += not torch.equal(a, b)
    assert 0 < flipped < len(cached)


def test_demo_pairs_are_the_pairs_open_pairs_generates():
    spec = "synthetic:6x4,first=1000"
    pairs = open_pairs(spec, image_size=16, max_pairs=20, seed=0)
    labels = open_dataset(spec, image_size=16).labels
    index_pairs, issame = generate_pairs(labels, max_pairs=20, seed=0)
    assert np.array_equal(issame, pairs.issame)
    assert np.array_equal(index_pairs.reshape(-1), pairs.images.indices)


def test_centre_angles_by_hand():
    e = torch.eye(3)
    centres = torch.stack([e[0], e[1], (e[0] + e[2]) / math.sqrt(2)])
    features = torch.stack([2 * e[0], e[1] + 0.0 * e[2], e[2]])
    own, other = centre_angles(features, torch.tensor([0, 1, 2]), centres)
    assert own == pytest.approx([0.0, 0.0, 45.0], abs=1e-4)
    assert other == pytest.approx([45.0, 90.0, 90.0], abs=1e-4)


def test_centre_angles_with_subcentres_take_the_nearest():
    e = torch.eye(2)
    centres = torch.stack([torch.stack([e[0], -e[0]]), torch.stack([e[1], -e[1]])])  # (2, 2, 2)
    own, other = centre_angles(torch.stack([-e[0]]), torch.tensor([0]), centres)
    assert own == pytest.approx([0.0], abs=1e-4) and other == pytest.approx([90.0], abs=1e-4)


def test_toy_statistics_compact_and_separated():
    rng = np.random.default_rng(0)
    angles = np.repeat(np.arange(4) * np.pi / 2, 50) + rng.normal(0, 0.01, 200)
    features = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(1, 5, (200, 1))
    stats = toy_statistics(features, np.repeat(np.arange(4), 50))
    assert stats["intra_deg"] < 1.0
    assert stats["inter_deg"] == pytest.approx(90.0, abs=1.0)
    assert stats["min_inter_deg"] == pytest.approx(90.0, abs=1.0)


def test_config_checks_and_quick_preset():
    with pytest.raises(ValueError, match="twice"):
        DemoConfig(heads=["arcface", "arcface"])
    with pytest.raises(ValueError, match="seeds"):
        DemoConfig(seeds=0)
    with pytest.raises(ValueError, match="toy"):
        DemoConfig(toy_dims=[4])
    quick = make_config(quick=True, seeds=2, epochs=None)
    assert quick.quick and quick.seeds == 2 and quick.epochs == make_config(quick=True).epochs
    assert f"first={quick.test_first}" in quick.test_spec.split(",")
    full = make_config()
    assert full.train_spec.startswith(f"synthetic:{full.train_identities}x{full.train_images}")
    # the held-out identities lie beyond the training identities
    assert full.test_first >= full.train_identities and quick.test_first >= quick.train_identities
    assert DemoConfig(threads=3).torch_threads() == 3 and DemoConfig().torch_threads() >= 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adam"}, "demo: config optimizer: must be one of sgd, adamw"),
        ({"lr": 0.0}, "demo: config lr: must be > 0"),
        ({"epochs": 0}, "demo: config epochs: must be an int >= 1"),
        ({"warmup_epochs": 20.0}, "demo: config warmup_epochs: must not exceed epochs 16"),
        ({"scheduler": "step"}, "demo: config scheduler"),
    ],
)
def test_training_settings_are_checked_by_train_config(changes, message):
    """The demo's training settings are TrainConfig's fields, checked by TrainConfig itself."""
    with pytest.raises(ValueError, match=message):
        DemoConfig(**changes)


def test_train_config_of_a_run_carries_the_shared_settings():
    from marginface.demo.config import TRAIN_FIELDS

    cfg = make_config(quick=True)
    run = cfg.train_config(head="cosface", seed=3, output="somewhere")
    assert all(getattr(run, k) == getattr(cfg, k) for k in TRAIN_FIELDS)
    assert (run.head, run.seed, run.data, run.device) == ("cosface", 3, cfg.train_spec, "cpu")


def test_progress_counts_images_and_estimates():
    progress = DemoProgress(total_images=40, enabled=False)
    assert progress.eta() is None
    progress.start_run("x", steps=4, images_per_step=10)
    for _ in range(2):
        progress.step({"loss": 1.0})
    assert progress.done == 20 and progress.eta() is not None and progress.eta() >= 0
    progress.end_run()
    assert steps_of(100, 32, 3) == 9


def test_a_folder_dataset_is_cached_like_the_synthetic_one(tmp_path):
    """--data FOLDER: the cache reads any open_dataset spec (here PNGs written by synth)."""
    from marginface.cli import main

    assert main(["synth", "--data", "synthetic:3x2", "--image-size", "16", "--output",
                 str(tmp_path / "faces"), "--quiet"]) == 0  # fmt: skip
    folder = render_dataset(str(tmp_path / "faces"), image_size=16, workers=1)
    synthetic = render_dataset("synthetic:3x2", image_size=16, workers=1)
    assert folder.num_classes == 3 and np.array_equal(folder.labels, synthetic.labels)
    assert np.array_equal(folder.pixels, synthetic.pixels)  # PNG is lossless
