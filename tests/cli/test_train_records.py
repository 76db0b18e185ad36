"""What ``marginface train`` writes about a run into model.json: the ``training`` record and the
``calibration`` of the saved weights on the first validation set."""

import json

import pytest
import torch

from _support.training import TINY, read_jsonl
from marginface.cli import main

VAL = "synthetic:30x4,first=300"  # 180 impostor pairs: FAR 1e-3 unresolvable, 1e-2 resolvable


def test_train_calibrates_and_records(cli, tmp_path, capsys):
    out = tmp_path / "run"
    # --max-pairs: the whole set (left out, validation is sized to the epoch's time)
    assert cli(*TINY, "--epochs", "2", "--output", out, "--pairs", VAL, "--max-pairs", "3000") == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "model.json").read_text())
    records = read_jsonl(out / "log.jsonl")
    train = [r for r in records if r.get("type") == "train"]
    val = [r for r in records if r.get("type") == "val"][-1]
    record = info["training"]
    assert (record["steps"], record["epochs"], record["data"]) == (8, 2.0, "synthetic:8x4")
    assert record["final_loss"] == pytest.approx(train[-1]["loss"], rel=1e-6)
    cal = info["calibration"]
    assert (cal["far"], cal["step"], cal["pairs"]) == (0.01, 8, "synthetic") and val["step"] == 8
    assert cal["tar"] == pytest.approx(val["tar@far=0.01"], abs=1e-12)  # the run's validation
    assert cal["bootstrap"]["over"] == "identities" and cal["impostor"] == 180
    assert "calibrated on the validation set: threshold" in printed
    assert "(FAR 1e-03 needs 1000 impostor pairs; the set has 180)" in printed
    # checkpoint.pt carries the same records; verify decides with the calibration
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert blob["model_info"]["calibration"] == cal
    assert blob["model_info"]["training"]["steps"] == 8
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (120, 90, 60)).save(image)
    assert main(["verify", str(image), str(image), "--checkpoint", str(out)]) == 0
    assert "calibrated at FAR 1e-02 on synthetic)" in capsys.readouterr().out


def test_max_steps_run_is_calibrated_at_its_last_step(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "2", "--max-steps", "3", "--output", out, "--pairs", VAL) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["training"]["steps"] == 3 and info["calibration"]["step"] == 3
    # scored once more for the calibration, without a validation record in the log
    assert not [r for r in read_jsonl(out / "log.jsonl") if r.get("type") == "val"]


def test_no_validation_set_no_calibration(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "1", "--output", out) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["calibration"] is None and info["training"]["steps"] == 4
    assert "not calibrated: no validation set (--pairs); run marginface calibrate" in (
        capsys.readouterr().out
    )
