"""s = auto in training, the margin warm-up schedule, the loss watch and the end-of-run summary."""

import math
from types import SimpleNamespace

import pytest
import yaml

import marginface
from _support.training import TINY, read_jsonl
from marginface.heads.scale import auto_scale, chance_loss
from marginface.training.config import TrainConfig
from marginface.training.watch import STALLED_ABOVE, LossWatch, resolve_scale


def test_resolve_scale_fills_auto_and_keeps_what_is_given():
    kwargs, choice = resolve_scale("arcface", 16, 299, {})
    expected = auto_scale(marginface.create_head("arcface", 4, 2), 299)
    assert kwargs["s"] == pytest.approx(expected, abs=1e-4) and choice.rule is not None
    assert f"s=auto -> {expected:.2f} for 299 classes" in choice.describe()
    kwargs, choice = resolve_scale("cosface", 16, 299, {"s": "auto", "m": 0.2})
    expected = auto_scale(marginface.create_head("cosface", 4, 2, m=0.2), 299)
    assert kwargs == {"s": pytest.approx(expected, abs=1e-4), "m": 0.2}
    kwargs, choice = resolve_scale("arcface", 16, 299, {"s": 64})
    assert kwargs["s"] == 64 and choice.rule is None and "(given)" in choice.describe()
    kwargs, choice = resolve_scale("softmax", 16, 299, {})
    assert kwargs == {} and choice.value is None


def test_resolve_scale_errors_name_the_key():
    with pytest.raises(ValueError, match="head_kwargs s: 'auto' applies to the cosine"):
        resolve_scale("sphereface2", 16, 10, {"s": "auto"})
    kwargs, choice = resolve_scale("arcface", 16, 10, {"s": "big"})  # create_head refuses it
    assert kwargs == {"s": "big"} and choice.value is None


def test_margin_warmup_is_validated():
    with pytest.raises(ValueError, match="margin_warmup_epochs"):
        TrainConfig(epochs=2, margin_warmup_epochs=3)
    with pytest.raises(ValueError, match="loss_watch"):
        TrainConfig(loss_watch=1.0)


class _Watch:
    @staticmethod
    def make(s, classes=299, steps=100, share=0.5):
        head = marginface.create_head("arcface", 4, 2, s=s)
        return LossWatch(head, classes, steps, share), chance_loss(head, classes)


def test_loss_watch_warns_once_on_the_plateau_with_the_scale_hint():
    watch, chance = _Watch.make(64.0)
    messages = [watch.update(step, 20.8) for step in range(1, 101)]
    said = [m for m in messages if m]
    assert len(said) == 1 and messages.index(said[0]) == 49  # at step 50 = 50% of 100
    assert "still above" in said[0] and "s=64 is high for 299 classes" in said[0]
    assert "--head-s auto" in said[0] and f"{chance:.2f}" in said[0]


def test_loss_watch_is_quiet_below_the_plateau_and_hints_otherwise_when_s_fits():
    watch, chance = _Watch.make(14.0)
    assert all(watch.update(k, STALLED_ABOVE * chance * 0.99) is None for k in range(1, 101))
    watch, chance = _Watch.make(14.0)
    said = [m for m in (watch.update(k, STALLED_ABOVE * chance * 1.01) for k in range(1, 101)) if m]
    assert len(said) == 1 and "s=14 is high" not in said[0] and "--lr" in said[0]


def test_loss_watch_off_and_for_heads_it_cannot_judge():
    watch, _ = _Watch.make(64.0, share=0.0)
    assert all(watch.update(k, 99.0) is None for k in range(1, 101))
    sphere = LossWatch(marginface.create_head("sphereface2", 4, 2), 10, 100, 0.25)
    assert all(sphere.update(k, 99.0) is None for k in range(1, 101))
    soft = LossWatch(marginface.create_head("softmax", 4, 2), 10, 100, 0.25)
    assert soft.chance == pytest.approx(math.log(10))


def test_cli_default_scale_is_auto_logged_saved_and_summarised(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "2", "--output", out, "--margin-warmup-epochs", "1") == 0
    printed = capsys.readouterr()
    expected = auto_scale(marginface.create_head("arcface", 4, 2), 8)
    # said once, before the first step (stderr, above the progress bar), not again at the end
    said = f"s=auto -> {expected:.2f} for 8 classes"
    assert (printed.out + printed.err).count(said) == 1 and said in printed.err
    assert "nearer their own class centre than any other:" in printed.out
    events = {r["event"]: r for r in read_jsonl(out / "log.jsonl") if r["type"] == "event"}
    assert events["scale"]["s"] == pytest.approx(expected, abs=1e-4) and events["scale"]["rule"]
    # which path of the fused loss ran is said and logged: on the CPU the chunked PyTorch path
    assert events["loss_path"]["path"] == "torch"
    assert "loss: the chunked PyTorch path" in printed.out + printed.err
    assert 0.0 <= events["summary"]["nearer_own_share"] <= 1.0
    assert events["summary"]["images"] == 32
    text = (out / "config.yaml").read_text()
    assert f"# head arcface: s=auto -> {expected:.2f}" in text
    assert yaml.safe_load(text)["margin_warmup_epochs"] == 1.0  # still a valid --config file
    info = __import__("json").loads((out / "model.json").read_text())
    assert info["head_kwargs"]["s"] == pytest.approx(expected, abs=1e-4)


def test_cli_stalled_scale_warns_during_and_after_the_run(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "2", "--output", out, "--head-s", "64") == 0
    printed = capsys.readouterr()
    assert printed.err.count("s=64 is high for 8 classes") == 1  # when seen (at step 4) ...
    verdict = [line for line in printed.out.splitlines() if line.startswith("verdict:")]
    assert "s=64 is high for 8 classes" in verdict[0]  # ... and at the end, in the verdict
    watch = [r for r in read_jsonl(out / "log.jsonl") if r.get("event") == "loss_watch"]
    assert len(watch) == 1 and watch[0]["step"] == 4  # 50% of 8 steps


def test_margin_weight_schedule_follows_the_step(tmp_path):
    from marginface.training.loop import Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.cfg = TrainConfig(epochs=4, margin_warmup_epochs=2)
    trainer.built = SimpleNamespace(steps_per_epoch=5)
    assert [trainer.margin_weight(k) for k in (0, 5, 9, 10, 19)] == [0.0, 0.5, 0.9, 1.0, 1.0]
    trainer.cfg = TrainConfig(epochs=4)
    assert trainer.margin_weight(0) == 1.0
