"""Training on a CUDA device (skipped without one): fp16 with a grad scaler, bf16, resume."""

import pytest
import torch

from _support.training import TINY, train_losses

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

GPU = [{"16": "32", "cpu": "cuda"}.get(a, a) for a in TINY] + ["--epochs", "2"]


@pytest.mark.parametrize("amp", ["fp16", "bf16", "none"])
def test_cuda_training(cli, tmp_path, amp):
    out = tmp_path / "run"
    assert cli(*GPU, "--amp", amp, "--output", out, "--grad-clip", "5") == 0
    losses = [loss for _, loss in train_losses(out)]
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    if amp == "fp16":
        assert blob["scaler"]["scale"] > 0  # the grad scaler ran and was saved


def test_cuda_resume_continues(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(*GPU, "--amp", "fp16", "--output", out, "--max-steps", "3") == 0
    assert cli("--output", out, "--resume", "--quiet") == 0
    assert [s for s, _ in train_losses(out)] == list(range(1, 9))


def test_cuda_iresnet18_at_112(cli, tmp_path):
    args = [
        "--data",
        "synthetic:8x8",
        "--backbone",
        "iresnet18",
        "--image-size",
        "112",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--device",
        "cuda",
        "--amp",
        "bf16",
        "--quiet",
        "--no-tensorboard",
        "--output",
        tmp_path / "run",
    ]
    assert cli(*args) == 0
    assert len(train_losses(tmp_path / "run")) == 4
