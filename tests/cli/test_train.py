"""``marginface train`` end to end through the real CLI entry point, on tiny synthetic data."""

import json

import pytest
import torch
import yaml

from _support.training import TINY, read_jsonl, train_losses
from marginface.backbones import load_model


def test_train_writes_every_output(cli, tmp_path):
    out = tmp_path / "run"
    code = cli(*TINY, "--epochs", "2", "--output", out, "--head-s", "32", "--head-m", "0.3")
    assert code == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["head_kwargs"] == {"s": 32, "m": 0.3} and cfg["epochs"] == 2
    losses = train_losses(out)
    assert [s for s, _ in losses] == list(range(1, 9))  # 2 epochs x 4 steps
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in losses)
    model, info = load_model(out)
    assert info["backbone"] == "small_cnn" and info["head"] == "arcface"
    assert info["head_kwargs"]["s"] == 32.0 and info["head_kwargs"]["m"] == 0.3
    assert len(info["identity_names"]) == 8 and info["image_size"] == 16
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 16)
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert blob["position"] == {"epoch": 2, "batch": 0, "step": 8, "seed": 0}
    for key in ("backbone", "head", "optimizer", "scheduler", "scaler", "rng", "config"):
        assert key in blob
    # model.pt is the backbone's plain state dict, equal to the checkpoint's
    state = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in blob["backbone"].items())


def test_loss_goes_down_with_more_epochs(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "6", "--output", out, "--head", "cosface") == 0
    losses = [loss for _, loss in train_losses(out)]
    assert sum(losses[-4:]) < sum(losses[:4])


def test_yaml_config_and_overrides(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "epochs: 1\nbatch-size: 16\nlr: 1e-3\noptimizer: adamw\nscheduler: cosine\n"
        "warmup_epochs: 0.5\nhead_kwargs: {s: 16}\n"
    )
    out = tmp_path / "run"
    assert cli(*TINY, "--config", config, "--output", out, "--head-m", "0.2") == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    # the command line (--batch-size 8 in TINY) beats the file; head kwargs merge
    assert cfg["batch_size"] == 8 and cfg["lr"] == 0.05 and cfg["optimizer"] == "adamw"
    assert cfg["head_kwargs"] == {"s": 16, "m": 0.2}
    lrs = [r["lr"] for r in read_jsonl(out / "log.jsonl") if r["type"] == "train"]
    # warm-up over 2 of the 4 steps, then half a cosine: 0.05 * (1/3, 2/3, 1, 1/2)
    assert lrs == pytest.approx([0.05 / 3, 0.1 / 3, 0.05, 0.025])


def test_unknown_config_key_lists_valid_ones(cli, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert cli(*TINY, "--config", config, "--output", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "valid keys:" in err and "batch_size" in err


def test_bad_head_hparam_is_reported_by_create_head(cli, tmp_path, capsys):
    # sphereface has no scale s: create_head rejects it, naming the valid ones
    code = cli(*TINY, "--head", "sphereface", "--head-s", "64", "--output", tmp_path / "r")
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown hyperparameter(s) s for head 'sphereface'" in err


def test_bf16_amp_validation_best_and_tensorboard(cli, tmp_path):
    out = tmp_path / "run"
    args = [a for a in TINY if a != "--no-tensorboard"]
    val = ["--pairs", "synthetic:4x4,first=100", "--val-every", "4"]
    code = cli(*args, "--epochs", "2", "--amp", "bf16", "--output", out, *val, "--grad-clip", "5")
    assert code == 0
    log = read_jsonl(out / "log.jsonl")
    train = [r for r in log if r["type"] == "train"]
    assert all(r["grad_norm"] >= 0 for r in train) and len(train) == 8
    vals = [r for r in log if r["type"] == "val"]
    assert [r["step"] for r in vals] == [4, 8]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in vals)
    best = json.loads((out / "best" / "model.json").read_text())
    assert isinstance(best["threshold"], float)
    assert (out / "best" / "model.pt").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())


def test_existing_run_is_not_overwritten(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "1", "--output", out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert cli(*TINY, "--epochs", "1", "--output", out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
