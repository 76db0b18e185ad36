"""Every registered head and every small-input backbone trains through ``marginface train``."""

import pytest
import torch

from _support.training import TINY, train_losses
from marginface.backbones import load_model
from marginface.heads import list_heads


def _with(args: list[str], **values: str) -> list[str]:
    out = list(args)
    for key, value in values.items():
        out[out.index(f"--{key.replace('_', '-')}") + 1] = value
    return out


@pytest.mark.parametrize("head", list_heads())
def test_every_head_trains(cli, tmp_path, head):
    out = tmp_path / head
    assert cli(*_with(TINY, head=head), "--output", out, "--max-steps", "2") == 0
    losses = [loss for _, loss in train_losses(out)]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert blob["model_info"]["head"] == head


@pytest.mark.parametrize("backbone", ["small_cnn", "mobilefacenet", "iresnet18"])
def test_small_input_backbones_train(cli, tmp_path, backbone):
    out = tmp_path / backbone
    args = _with(TINY, backbone=backbone, image_size="32")
    assert cli(*args, "--output", out, "--max-steps", "1") == 0
    model, info = load_model(out)
    assert info["backbone_kwargs"] == {"embedding_size": 16, "input_size": 32}
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 16)
