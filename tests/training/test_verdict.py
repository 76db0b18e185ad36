"""The end-of-training verdict: one rule (training.verdict), judged on the final numbers of the
whole run, printed, logged and in TrainResult, also after --resume."""

import marginface
from _support.training import TINY, read_jsonl
from marginface.heads.scale import chance_loss
from marginface.training.verdict import CONVERGED_SHARE, is_trained, training_verdict
from marginface.training.watch import STALLED_ABOVE, LossWatch


def _events(out, name):
    return [r for r in read_jsonl(out / "log.jsonl") if r.get("event") == name]


def test_rule_on_the_share_and_the_lines():
    assert is_trained(CONVERGED_SHARE) and not is_trained(CONVERGED_SHARE - 1e-9)
    summary = {"nearer_own_share": 0.348, "images": 1095}
    v = training_verdict(stopped="finished", steps=160, total_steps=160, summary=summary,
                         stalled=None)  # fmt: skip
    assert v.trained is False and v.line.startswith("NOT trained: 34.8% of 1095")
    assert "--epochs" in v.line and "\n" not in v.line
    v = training_verdict(stopped="max_steps", steps=69, total_steps=136, summary=summary,
                         stalled=None)  # fmt: skip
    assert "step 69 of 136" in v.line and "--max-steps" in v.line
    good = {"nearer_own_share": 0.97, "images": 100}
    v = training_verdict(stopped="finished", steps=9, total_steps=9, summary=good, stalled=None)
    assert v.trained is True and v.line.startswith("trained: 97.0% of 100")
    # a stalled loss is NOT trained whatever the share; the message is the watch's
    v = training_verdict(stopped="finished", steps=9, total_steps=9, summary=good, stalled="x y")
    assert v.trained is False and v.line == "NOT trained: x y"
    v = training_verdict(stopped="interrupted", steps=3, total_steps=9, summary=None, stalled=None)
    assert v.trained is False and "--resume" in v.line
    v = training_verdict(stopped="finished", steps=9, total_steps=9, summary=None, stalled=None,
                         loss_first=2.0, loss_last=1.0)  # fmt: skip
    assert v.trained is None and "2.0000 to 1.0000" in v.line


def test_final_message_uses_the_last_numbers_not_the_halfway_ones():
    head = marginface.create_head("arcface", 4, 2, s=64.0)
    chance = chance_loss(head, 299)
    watch = LossWatch(head, 299, 100, 0.5)
    for step in range(1, 101):  # 30 at the check, 25 at the end: both above the plateau
        watch.update(step, 30.0 if step <= 50 else 25.0)
    assert chance * STALLED_ABOVE < 25.0
    final = watch.final_message()
    assert "the loss is 25.00 after 100 steps (it started at 30.00)" in final
    assert "after 50 steps" in watch.warning  # the halfway warning kept its own numbers
    watch = LossWatch(head, 299, 100, 0.5)
    for step in range(1, 101):  # stalled halfway, learnt by the end
        watch.update(step, 30.0 if step <= 50 else 0.1)
    assert watch.warning is not None and watch.final_message() is None


def test_cli_verdict_is_printed_logged_and_uses_final_numbers(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--epochs", "2", "--output", out, "--head-s", "64") == 0
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if line.startswith("verdict: ")]
    assert len(lines) == 1 and lines[0].startswith("verdict: NOT trained: the loss is ")
    assert "after 8 steps" in lines[0]  # the last step, not the check at step 4
    assert "s=64 is high for 8 classes" in lines[0]
    (event,) = _events(out, "verdict")
    assert event["trained"] is False and event["line"] == lines[0][len("verdict: ") :]


def test_verdict_after_resume_judges_the_whole_run(tmp_path):
    from marginface.training import train

    base = dict(data="synthetic:8x4", backbone="small_cnn", head="arcface", image_size=16,
                embedding_size=16, batch_size=8, lr=0.05, progress=False, tensorboard=False,
                device="cpu", epochs=2, head_kwargs={"s": 64})  # fmt: skip
    out = tmp_path / "run"
    half = train({**base, "output": str(out), "max_steps": 3})
    assert half.stopped == "max_steps" and half.verdict.trained is False
    assert "after 3 steps" in half.verdict.line  # stalled already: said with step 3's numbers
    resumed = train({**base, "output": str(out), "resume": True})
    straight = train({**base, "output": str(tmp_path / "straight")})
    assert resumed.steps == straight.steps == 8
    assert resumed.verdict == straight.verdict  # the whole run's final numbers, not 3 steps'
    assert "after 8 steps" in resumed.verdict.line and resumed.verdict.trained is False
    events = _events(out, "verdict")
    assert [e["step"] for e in events] == [3, 8] and events[-1]["line"] == resumed.verdict.line
