"""The CPU time estimate said before the first step of a slow run, with a setting that fits."""

import math

import pytest
import torch

from _support.training import TINY, read_jsonl
from marginface.training import estimate as est


def test_probe_times_a_fresh_model_and_leaves_the_random_state_alone():
    before = torch.get_rng_state()
    seconds = est.seconds_per_image("small_cnn", 16, 16)
    assert math.isfinite(seconds) and seconds > 0
    assert torch.equal(before, torch.get_rng_state())


def _fake_speed(table):
    def seconds_per_image(backbone, image_size, embedding_size, backbone_kwargs=None, images=4):
        return table[(backbone, image_size)]

    return seconds_per_image


def test_slow_run_gets_the_fastest_fitting_cpu_setting(monkeypatch):
    monkeypatch.setattr(est, "seconds_per_image", _fake_speed({
        ("iresnet50", 112): 1.4, ("mobilefacenet", 112): 0.05, ("small_cnn", 64): 0.002,
    }))  # fmt: skip
    e = est.cpu_estimate("iresnet50", 112, 512, {}, train_images=20 * 1095, val_images=0)
    assert e.seconds == pytest.approx(1.4 * 20 * 1095) and e.seconds > est.SLOW_S
    assert e.suggestion == "--backbone mobilefacenet --image-size 112"
    assert e.suggested_seconds == pytest.approx(0.05 * 20 * 1095)
    line = e.line("iresnet50", 112)
    assert "about 8.5 h" in line and "mobilefacenet" in line and "about 18 min" in line
    # validation images count at a third of a training image (forward only)
    v = est.cpu_estimate("small_cnn", 64, 512, {}, train_images=300, val_images=900)
    assert v.seconds == pytest.approx(0.002 * (300 + 300)) and v.suggestion is None


def test_nothing_fits_gives_the_fastest_and_nothing_faster_gives_no_suggestion(monkeypatch):
    monkeypatch.setattr(est, "seconds_per_image", _fake_speed({
        ("iresnet50", 112): 2.0, ("mobilefacenet", 112): 1.0, ("small_cnn", 64): 0.5,
    }))  # fmt: skip
    e = est.cpu_estimate("iresnet50", 112, 512, {}, train_images=10**5, val_images=0)
    assert e.suggestion == "--backbone small_cnn --image-size 64"
    e = est.cpu_estimate("small_cnn", 64, 512, {}, train_images=10**5, val_images=0)
    assert e.suggestion is None  # mobilefacenet is slower: nothing to suggest


def test_train_says_it_before_the_first_step(cli, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(est, "seconds_per_image", _fake_speed({
        ("small_cnn", 16): 100.0, ("mobilefacenet", 112): 0.05, ("small_cnn", 64): 0.01,
    }))  # fmt: skip
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "1", "--output", out) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "on this CPU the run will take" in x]
    assert line.startswith("marginface train: warning: ") and "about 53 min" in line  # 32 img
    assert "--backbone mobilefacenet --image-size 112" in line
    records = read_jsonl(out / "log.jsonl")
    kinds = [r.get("event", r["type"]) for r in records]
    assert kinds.index("estimate") < kinds.index("train")
    assert records[kinds.index("estimate")]["seconds"] == pytest.approx(3200.0)
