"""--resume continues exactly: an interrupted-and-resumed run logs the same losses as a
straight one (CPU, bit for bit), whether stopped by max_steps or by Ctrl-C inside a step."""

import shutil

import pytest
import torch

import marginface.training.loop as loop
from _support.training import TINY, read_jsonl, train_losses

# dropout (torch RNG), flips (item seeds), accumulation, SGD momentum, a head with state
EXTRA = ["--epochs", "3", "--backbone-kwargs", "{dropout: 0.3}", "--checkpoint-every", "2"]


def _straight(cli, out, *args):
    assert cli(*TINY, *EXTRA, *args, "--output", out) == 0
    return train_losses(out)


@pytest.mark.parametrize("stop_at", [5, 4])  # mid-epoch, and exactly at an epoch end
def test_max_steps_then_resume_is_exact(cli, tmp_path, stop_at):
    straight = _straight(cli, tmp_path / "a")
    assert len(straight) == 12
    out = tmp_path / "b"
    assert cli(*TINY, *EXTRA, "--output", out, "--max-steps", stop_at) == 0
    assert train_losses(out) == straight[:stop_at]
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert blob["position"]["step"] == stop_at
    # --output and --resume alone: the rest comes from the saved config.yaml
    assert cli("--output", out, "--resume", "--quiet") == 0
    assert train_losses(out) == straight  # exactly equal floats
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_inside_a_step_then_resume_is_exact(cli, tmp_path, monkeypatch):
    args = ["--head", "sphereface", "--accumulate", "2"]  # 2 steps per epoch, a stateful head
    straight = _straight(cli, tmp_path / "a", *args)
    assert len(straight) == 6

    calls = {"n": 0}
    forward = loop.TrainModule.forward

    def interrupted(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 8:  # the 2nd micro-batch of step 4: BN stats and head state moved
            raise KeyboardInterrupt
        return forward(self, images, labels)

    monkeypatch.setattr(loop.TrainModule, "forward", interrupted)
    out = tmp_path / "b"
    assert cli(*TINY, *EXTRA, *args, "--output", out) == 130
    assert train_losses(out) == straight[:3]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"] == 3
    monkeypatch.setattr(loop.TrainModule, "forward", forward)
    assert cli("--output", out, "--resume", "--quiet") == 0
    assert train_losses(out) == straight
    events = [r["event"] for r in read_jsonl(out / "log.jsonl") if r["type"] == "event"]
    assert "resume" in events


def test_resume_refuses_a_changed_config(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "2", "--output", out, "--max-steps", "2") == 0
    assert cli("--output", out, "--resume", "--lr", "0.2", "--quiet") == 2
    assert "lr: checkpoint 0.05, now 0.2" in capsys.readouterr().err


def test_resume_without_a_run_is_clear(cli, tmp_path, capsys):
    assert cli("--output", tmp_path / "nothing", "--resume") == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_loader_workers_change_nothing(cli, tmp_path):
    """Worker processes load the same augmented items: the losses equal the in-process ones,
    also across an interruption (stop with 2 workers, resume with 1)."""
    straight = _straight(cli, tmp_path / "a")
    out = tmp_path / "b"
    assert cli(*TINY, *EXTRA, "--output", out, "--max-steps", "6", "--workers", "2") == 0
    assert cli("--output", out, "--resume", "--quiet", "--workers", "1") == 0
    assert train_losses(out) == straight


def test_finetune_resume_is_exact(cli, trained_run, tmp_path, capsys):
    """train --init, stopped mid-epoch and resumed, ends with the weights and losses of the
    straight run; the resume takes the model and the centres from its checkpoint (it neither
    needs the start model nor imprints again), and config.yaml records the --init keys."""
    start = tmp_path / "start"
    shutil.copytree(trained_run, start)
    args = ["--data", "synthetic:6x4,first=1000", "--init", start, "--freeze", "1",
            "--backbone-lr", "0.3", "--batch-size", "8", "--epochs", "3", "--quiet",
            "--no-tensorboard", "--device", "cpu"]  # fmt: skip
    assert cli(*args, "--output", tmp_path / "a") == 0
    straight = train_losses(tmp_path / "a")
    assert len(straight) == 9
    out = tmp_path / "b"
    assert cli(*args, "--output", out, "--max-steps", 4) == 0
    saved = (out / "config.yaml").read_text()
    assert f"init: {start}" in saved and "init_centres: imprint" in saved
    assert "backbone_lr: 0.3" in saved and "freeze: 1" in saved and "backbone: small_cnn" in saved
    capsys.readouterr()
    shutil.rmtree(start)
    assert cli("--output", out, "--resume", "--quiet") == 0
    err = capsys.readouterr().err
    assert "resuming: weights and class centres from the checkpoint" in err
    assert "imprinted" not in err
    assert train_losses(out) == straight  # exactly equal floats
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    for part in ("backbone", "head"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
