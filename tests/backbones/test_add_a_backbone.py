"""Worked example (docs/CONTRACTS.md, "Add a backbone"): a backbone is one file, a factory
registered by name; then TrainConfig / ``marginface train --backbone``, the saved model files
and ``load_model`` take it like the built-in ones.

The factory takes ``embedding_size`` (and may take more keyword options, e.g. ``input_size``);
the module maps (B, 3, H, W) images in [-1, 1] to (B, D) embeddings.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginface.backbones import create_backbone, load_model, register_backbone
from marginface.backbones import registry as backbone_registry
from marginface.training import TrainConfig, train


# --- the whole of "my_backbones.py" --------------------------------------------------------
class TinyMLP(nn.Module):
    """Flatten, one hidden layer, a linear embedding: (B, 3, S, S) -> (B, D)."""

    def __init__(self, embedding_size: int, input_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * input_size * input_size, 32),
            nn.PReLU(32),
            nn.Linear(32, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_mlp(embedding_size: int = 512, input_size: int = 112) -> nn.Module:
    return TinyMLP(embedding_size, input_size)


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def registered(monkeypatch):
    """``@register_backbone("tiny_mlp")`` on the factory, undone after the test (the registry
    is process-wide; a project registers at import of its module instead)."""
    monkeypatch.setattr(backbone_registry, "_BACKBONES", dict(backbone_registry._BACKBONES))
    register_backbone("tiny_mlp")(tiny_mlp)


def test_a_registered_backbone_trains_saves_and_loads(registered, tmp_path):
    assert create_backbone("tiny_mlp", embedding_size=8, input_size=16)(
        torch.zeros(2, 3, 16, 16)
    ).shape == (2, 8)
    config = TrainConfig(
        data="synthetic:4x4",
        backbone="tiny_mlp",
        backbone_kwargs={"input_size": 16},
        head="arcface",
        image_size=16,
        embedding_size=8,
        batch_size=8,
        epochs=1,
        max_steps=1,
        output=str(tmp_path / "run"),
        device="cpu",
        progress=False,
        tensorboard=False,
        loss_watch=0.0,
        summary_images=0,
    )
    result = train(config)
    assert result.steps == 1 and isinstance(result.backbone, TinyMLP)
    model, info = load_model(tmp_path / "run")
    assert info["backbone"] == "tiny_mlp" and isinstance(model, TinyMLP)
    trained = result.backbone.eval()(torch.ones(1, 3, 16, 16))
    torch.testing.assert_close(model(torch.ones(1, 3, 16, 16)), trained)
