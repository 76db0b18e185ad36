"""embed_dataset (flip test, order, normalisation, EmbedOptions) and evaluate_pairs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from marginface.evaluation import EmbedOptions, embed_dataset, evaluate_pairs, pair_scores

QUIET = EmbedOptions(progress=False)


class LabelledImages(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i


def test_embed_dataset_flip_order_and_norm(tiny_net):
    torch.manual_seed(1)
    images = torch.rand(13, 3, 16, 16) * 2 - 1
    tiny_net.train()  # embed_dataset must evaluate in eval mode and restore the mode
    emb = embed_dataset(tiny_net, LabelledImages(images), QUIET.replace(batch_size=5))
    assert tiny_net.training
    tiny_net.eval()
    with torch.no_grad():
        expected = F.normalize(tiny_net(images) + tiny_net(images.flip(3)), dim=1).numpy()
        no_flip = F.normalize(tiny_net(images), dim=1).numpy()
    assert emb.dtype == np.float32 and emb.shape == (13, 8)
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    plain = embed_dataset(tiny_net, TensorDataset(images), QUIET.replace(flip=False))
    np.testing.assert_allclose(plain, no_flip, atol=1e-5)
    assert not np.allclose(plain, emb, atol=1e-3)


def test_flip_test_makes_mirror_images_identical(tiny_net):
    x = torch.rand(1, 3, 16, 16)
    emb = embed_dataset(tiny_net, TensorDataset(torch.cat([x, x.flip(3)])), QUIET)
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-5)


def test_evaluate_pairs(tiny_net, pair_set):
    metrics, scores = evaluate_pairs(tiny_net, pair_set, QUIET.replace(batch_size=7))
    assert scores.shape == (40,)
    emb = embed_dataset(tiny_net, pair_set.images, QUIET)
    np.testing.assert_allclose(scores, np.sum(emb[0::2] * emb[1::2], axis=1), atol=1e-6)
    # genuine pairs are near-copies: they score higher than impostors
    assert scores[pair_set.issame].min() > scores[~pair_set.issame].mean()
    assert metrics["auc"] > 0.9 and metrics["num_pairs"] == 40


def test_evaluate_pairs_image_count_mismatch(tiny_net):
    bad = SimpleNamespace(
        images=TensorDataset(torch.rand(5, 3, 16, 16)), issame=np.array([True, False]), name="x"
    )
    with pytest.raises(ValueError, match="'x': 5 images for 2 pairs"):
        evaluate_pairs(tiny_net, bad, QUIET)


def test_pair_scores_needs_even_rows():
    with pytest.raises(ValueError, match="even row count"):
        pair_scores(np.zeros((3, 4), dtype=np.float32))


def test_empty_dataset(tiny_net):
    with pytest.raises(ValueError, match="empty"):
        embed_dataset(tiny_net, TensorDataset(torch.zeros(0, 3, 16, 16)), QUIET)


def test_unnormalised_float64_features_are_the_flip_sum(tiny_net):
    """normalize=False, dtype=float64: what IJB's image features are (norm kept)."""
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    raw = embed_dataset(tiny_net, TensorDataset(images), QUIET, normalize=False, dtype=np.float64)
    with torch.no_grad():
        expected = (tiny_net(images) + tiny_net(images.flip(3))).numpy()
    assert raw.dtype == np.float64
    np.testing.assert_allclose(raw, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"batch_size": 0}, "batch_size must be an int >= 1"), ({"workers": -1}, "workers must be")],
)
def test_embed_options_are_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        EmbedOptions(**changes)
