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
        ("iresnet50", 112): 2.8, ("mobilefacenet", 112): 0.1, ("small_cnn", 64): 0.004,
    }))  # fmt: skip
    # the first step: 128 images at 1.4 s each (a probe of a few images costs 2x per image)
    first = dict(step_seconds=1.4 * 128, images_per_step=128)
    e = est.cpu_estimate("iresnet50", 112, 512, {}, **first, train_images=20 * 1095,
                         val_images=0)  # fmt: skip
    assert e.per_image_s == pytest.approx(1.4)
    assert e.seconds == pytest.approx(1.4 * 20 * 1095) and e.seconds > est.SLOW_S
    assert e.suggestion == "--backbone mobilefacenet --image-size 112"
    assert e.suggested_seconds == pytest.approx(0.05 * 20 * 1095)  # scaled by the probes
    line = e.line("iresnet50", 112)
    assert "about 8.5 h" in line and "mobilefacenet" in line and "about 18 min" in line
    # validation images count at a third of a training image (forward only)
    v = est.cpu_estimate("small_cnn", 64, 512, {}, step_seconds=0.2, images_per_step=100,
                         train_images=300, val_images=900)  # fmt: skip
    assert v.seconds == pytest.approx(0.002 * (300 + 300)) and v.suggestion is None


def test_nothing_fits_gives_the_fastest_and_nothing_faster_gives_no_suggestion(monkeypatch):
    monkeypatch.setattr(est, "seconds_per_image", _fake_speed({
        ("iresnet50", 112): 2.0, ("mobilefacenet", 112): 1.0, ("small_cnn", 64): 0.5,
    }))  # fmt: skip
    first = dict(step_seconds=2.0, images_per_step=1)
    e = est.cpu_estimate("iresnet50", 112, 512, {}, **first, train_images=10**5, val_images=0)
    assert e.suggestion == "--backbone small_cnn --image-size 64"
    assert e.suggested_seconds == pytest.approx(0.5 * 10**5)
    e = est.cpu_estimate("small_cnn", 64, 512, {}, **first, train_images=10**5, val_images=0)
    assert e.suggestion is None  # mobilefacenet is slower: nothing to suggest


def test_train_says_it_after_the_first_step(cli, tmp_path, capsys, monkeypatch):
    import marginface.training.loop as loop

    monkeypatch.setattr(est, "SLOW_S", 0.0)  # every run is slow
    monkeypatch.setattr(loop, "SLOW_S", 0.0)
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "2", "--output", out) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "the rest of the run will take" in x]
    assert line.startswith("marginface train: warning: on this CPU") and "small_cnn at 16" in line
    records = read_jsonl(out / "log.jsonl")
    kinds = [(r.get("event", r["type"]), r["step"]) for r in records]
    assert kinds.index(("estimate", 1)) < kinds.index(("train", 2))  # before the second step
    (estimate,) = [r for r in records if r.get("event") == "estimate"]
    first = next(r for r in records if r["type"] == "train")
    assert estimate["per_image_s"] == pytest.approx(1 / first["images_per_s"])
    assert estimate["seconds"] == pytest.approx(estimate["per_image_s"] * 7 * 8)  # 7 steps left
