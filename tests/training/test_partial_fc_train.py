"""`marginface train` with the sharded, sampled classifier (--partial-fc, --sample-rate)."""

import json
from pathlib import Path

import pytest
import torch

from _support.training import TINY, run_two_ranks, train_losses

PFC = ["--epochs", "3", "--sample-rate", "0.5", "--checkpoint-every", "2"]


def test_sampled_single_process_run_trains_and_resumes_exactly(cli, tmp_path):
    straight = tmp_path / "a"
    assert cli(*TINY, *PFC, "--output", straight) == 0
    losses = train_losses(straight)
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(v)) for _, v in losses)
    blob = torch.load(straight / "checkpoint.pt", weights_only=False)
    assert blob["sharded_head"] is True
    assert blob["head"]["head.weight"].shape == (8, 16)  # all 8 classes, one shard here
    info = json.loads((straight / "model.json").read_text())
    assert info["head"] == "arcface" and info["head_kwargs"]["m"] == 0.5

    out = tmp_path / "b"
    assert cli(*TINY, *PFC, "--output", out, "--max-steps", "5") == 0
    assert cli("--output", out, "--resume", "--quiet") == 0
    assert train_losses(out) == losses  # sampling generator and centres restored exactly


def test_sampling_refuses_gradient_accumulation(cli, tmp_path, capsys):
    code = cli(*TINY, "--sample-rate", "0.5", "--accumulate", "2", "--output", tmp_path / "r")
    assert code != 0
    assert "sample_rate" in capsys.readouterr().err


def test_resume_keeps_the_classifier_kind(cli, tmp_path, capsys):
    out = tmp_path / "r"
    assert cli(*TINY, "--epochs", "1", "--max-steps", "2", "--output", out) == 0
    assert cli("--output", out, "--resume", "--quiet", "--partial-fc") != 0
    assert "partial_fc" in capsys.readouterr().err


@pytest.mark.parametrize("sample", ["1.0", "0.5"])
def test_two_process_gloo_job_with_sharded_centres(tmp_path, sample):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "2", "--output", str(out), "--batch-size", "4", "--partial-fc"]
    args += ["--sample-rate", sample]
    r0, r1 = run_two_ranks(tmp_path, args)
    assert [s for s, _ in r0["history"]] == list(range(1, 9))
    assert r0["history"] == r1["history"]  # the same global loss on both ranks
    backbone = [k for k in r0["params"] if not k.startswith("head.")]
    for name in backbone:  # DDP kept the backbone replicas identical
        assert torch.equal(r0["params"][name], r1["params"][name]), name
    # each rank holds half of the 8 class centres; rank 0 saved all of them
    assert r0["shard"] == (0, 4) and r1["shard"] == (4, 8)
    blob = torch.load(Path(out) / "checkpoint.pt", weights_only=False)
    assert blob["head"]["head.weight"].shape == (8, 16)
    torch.testing.assert_close(blob["head"]["head.weight"][:4], r0["head_weight"])
    torch.testing.assert_close(blob["head"]["head.weight"][4:], r1["head_weight"])
