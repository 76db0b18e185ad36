"""Faults: a NaN loss stops the run and keeps the last good checkpoint; an unwritable or full
output folder is reported before training starts."""

import math
import shutil

import torch

import marginface.training.loop as loop
import marginface.training.preflight as preflight
from _support.training import TINY, read_jsonl, train_losses


def test_nan_loss_stops_and_keeps_last_good_checkpoint(cli, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    forward = loop.TrainModule.forward

    def goes_nan(self, images, labels):
        calls["n"] += 1
        loss = forward(self, images, labels)
        return loss * math.nan if calls["n"] == 6 else loss  # step 6, in epoch 2

    monkeypatch.setattr(loop.TrainModule, "forward", goes_nan)
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "3", "--output", out) == 1
    err = capsys.readouterr().err
    assert "the loss became nan at step 6 (epoch 1)" in err
    assert "last good checkpoint" in err and "checkpoint.pt" in err
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert blob["position"]["step"] == 4  # the epoch-1 checkpoint, untouched
    assert all(torch.isfinite(v).all() for v in blob["backbone"].values() if v.is_floating_point())
    assert [s for s, _ in train_losses(out)] == [1, 2, 3, 4, 5]
    assert read_jsonl(out / "log.jsonl")[-1]["event"] == "diverged"


def test_unwritable_output_reported_before_training(cli, tmp_path, capsys, monkeypatch):
    started = []
    monkeypatch.setattr(loop.Trainer, "_loop", lambda self, pos: started.append(pos))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli(*TINY, "--output", blocker / "run") == 2
    err = capsys.readouterr().err
    assert "output folder" in err and "a_file is a file" in err
    assert not started


def test_full_disk_reported_before_training(cli, tmp_path, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000))
    out = tmp_path / "run"
    assert cli(*TINY, "--output", out) == 2
    err = capsys.readouterr().err
    assert "not enough free disk space: 1.0 MB free" in err and "needs about" in err
    assert not (out / "log.jsonl").exists() and not (out / "checkpoint.pt").exists()


def test_estimate_covers_the_files_really_written(cli, tmp_path):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "1", "--output", out) == 0
    from marginface.backbones import create_backbone
    from marginface.heads import create_head

    backbone = create_backbone("small_cnn", embedding_size=16, input_size=16)
    head = create_head("arcface", 16, 8)
    written = sum(p.stat().st_size for p in out.rglob("*.pt"))
    assert written < preflight.estimate_output_bytes(backbone, head, "sgd")
