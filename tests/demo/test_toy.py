"""The 2-D / 3-D toy (marginface.demo.toy): deterministic, a ToyResult the panels and the
statistics accept, and, on the demo's default toy setting, the papers' picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginface.demo.cache import render_dataset
from marginface.demo.config import make_config
from marginface.demo.sphere_plots import plot_circle_panels, plot_sphere_panels, toy_statistics
from marginface.demo.toy import TOY_HEAD_KWARGS, ToySchedule, pca_features, train_toy
from marginface.heads import create_head, head_hparams
from marginface.heads.scale import auto_scale

TINY = ToySchedule(steps=40, components=8, hidden=16, warmup_steps=5)
MARGIN_HEADS = ("sphereface", "cosface", "arcface")


@pytest.fixture(scope="module")
def faces():
    return render_dataset("synthetic:4x6", image_size=16, workers=1)


def test_pca_features_are_whitened_and_a_function_of_the_pixels(faces):
    x = pca_features(faces.pixels, 8)
    assert x.shape == (24, 8) and x.dtype == np.float32
    # float32 coordinates of float64 arithmetic: 1e-5 is a few hundred ulp
    assert np.cov(x.T, bias=True) == pytest.approx(np.eye(8), abs=1e-5)
    order = np.random.default_rng(0).permutation(24)
    assert pca_features(faces.pixels[order], 8) == pytest.approx(x[order], abs=1e-4)
    with pytest.raises(ValueError, match="components"):
        pca_features(faces.pixels, 25)


def test_toy_is_deterministic_and_leaves_the_global_rng_alone(faces):
    state = torch.random.get_rng_state()
    a = train_toy(faces, "cosface", {}, dim=2, seed=0, schedule=TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_toy(faces, "cosface", {}, dim=2, seed=0, schedule=TINY)
    c = train_toy(faces, "cosface", {}, dim=2, seed=1, schedule=TINY)
    assert np.array_equal(a.features, b.features) and np.array_equal(a.history, b.history)
    assert np.array_equal(a.centres, b.centres)
    assert not np.allclose(a.features, c.features)


@pytest.mark.parametrize("head,dim", [("softmax", 2), ("arcface", 3), ("sphereface", 2)])
def test_toy_result_feeds_the_panels_and_the_statistics(faces, head, dim):
    r = train_toy(faces, head, {}, dim=dim, seed=0, schedule=TINY)
    assert r.head == head and r.dim == dim
    assert r.features.shape == (24, dim) and np.all(np.isfinite(r.features))
    assert np.array_equal(r.labels, faces.labels) and r.centres.shape == (4, dim)
    assert r.history.shape == (TINY.steps, 2) and r.final_loss == r.history[-1, 1]
    assert r.history[-1, 1] < r.history[0, 1]  # it learns
    stats = toy_statistics(r.features, r.labels)
    assert 0 <= stats["intra_deg"] <= 180 and 0 <= stats["min_inter_deg"] <= 180
    plot = plot_circle_panels if dim == 2 else plot_sphere_panels
    assert len(plot([r]).axes) >= 1


def test_cosine_heads_get_the_auto_scale_unless_given(faces):
    r = train_toy(faces, "arcface", {}, dim=2, seed=0, schedule=TINY)
    expected = auto_scale(create_head("arcface", 2, 4), 4)
    assert r.head_kwargs["s"] == pytest.approx(expected, abs=1e-4) and r.head_kwargs["m"] == 0.5
    r = train_toy(faces, "cosface", {"s": 7.0}, dim=2, seed=0, schedule=TINY)
    assert r.head_kwargs["s"] == 7.0


def test_head_kwargs_none_are_the_toys_and_empty_the_usual(faces):
    toy = train_toy(faces, "sphereface", None, dim=2, seed=0, schedule=TINY).head_kwargs
    assert {k: toy[k] for k in TOY_HEAD_KWARGS["sphereface"]} == TOY_HEAD_KWARGS["sphereface"]
    usual = train_toy(faces, "sphereface", {}, dim=2, seed=0, schedule=TINY).head_kwargs
    assert usual == head_hparams("sphereface")


@pytest.mark.slow
def test_margin_heads_are_tighter_and_further_apart_than_softmax():
    """The papers' picture on the demo's default toy identities, in 2-D and in 3-D."""
    cfg = make_config()
    toy = render_dataset(cfg.toy_spec, image_size=cfg.image_size, workers=1)
    for dim in (2, 3):
        stats = {
            h: toy_statistics(r.features, r.labels)
            for h in ("softmax", *MARGIN_HEADS)
            for r in [train_toy(toy, h, {}, dim=dim, seed=0)]
        }
        base = stats["softmax"]
        for head in MARGIN_HEADS:
            assert stats[head]["intra_deg"] < base["intra_deg"], (dim, head, stats)
            assert stats[head]["min_inter_deg"] > base["min_inter_deg"], (dim, head, stats)
