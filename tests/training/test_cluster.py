"""Past one machine, simulated on this one with torchrun and gloo on loopback: two nodes equal one
node of two processes bit for bit; a worker killed mid-epoch under ``--max-restarts 1`` makes
the group restart and resume by itself, ending where an uninterrupted run ends; SIGTERM to every
worker (a scheduler's preemption) saves a resumable checkpoint at once; a run saved by 2
processes resumes at 1 and at 3 with the documented data position."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from _support.launch import free_port, launch
from _support.training import TINY, WORKER, read_jsonl
from marginface.training.checkpoint import load_checkpoint
from marginface.training.sampler import EpochBatchSampler, epoch_permutation

ELASTIC_WORKER = Path(__file__).parents[1] / "_support" / "elastic_worker.py"
#: 32 images, 2 processes x batch 4: 4 steps an epoch, 12 in all
RUN = [*TINY, "--batch-size", "4", "--epochs", "3"]


def torchrun(launcher: list[str], target: list[str], timeout: float = 240) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    src = str(Path(__file__).parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *launcher, *target],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that a timeout takes the workers down with the agent
    )


def finish(*procs: subprocess.Popen, timeout: float = 240, code: int = 0) -> list[str]:
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(q.pid, signal.SIGKILL)
            raise AssertionError("torchrun timed out") from None
        outputs.append(out)
        assert p.returncode == code, "\n".join(outputs)
    return outputs


def weights(run: Path) -> dict[str, torch.Tensor]:
    blob = load_checkpoint(run / "checkpoint.pt", map_location="cpu")
    head = {f"head.{k}": v for k, v in (blob["head"] or {}).items() if torch.is_tensor(v)}
    return {**blob["backbone"], **head}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def single_node(out: Path, extra: list[str]) -> None:
    train = ["-m", "marginface", "train", *RUN, *extra, "--output", str(out)]
    finish(torchrun(["--standalone", "--nnodes", "1", "--nproc-per-node", "2"], train))


@pytest.mark.parametrize(
    "extra",
    [[], pytest.param(["--sample-rate", "0.5"], marks=pytest.mark.slow)],
    ids=["dense", "partial_fc"],
)
def test_two_nodes_equal_one_node_of_two_processes(tmp_path, extra):
    single_node(tmp_path / "one", extra)
    port = free_port()
    rdzv = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes"]  # fmt: skip
    train = ["-m", "marginface", "train", *RUN, *extra, "--output", str(tmp_path / "two")]
    host = torchrun([*rdzv, "--rdzv-conf", "is_host=1"], train)
    other = torchrun([*rdzv, "--rdzv-conf", "is_host=0"], train)
    finish(host, other)
    assert_same(weights(tmp_path / "two"), weights(tmp_path / "one"))
    start = next(r for r in read_jsonl(tmp_path / "two" / "log.jsonl") if r.get("event") == "start")
    assert start["world_size"] == 2


def test_a_killed_worker_restarts_the_group_which_resumes_by_itself(tmp_path):
    launcher = ["--standalone", "--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "1"]
    runs = {}
    for name, die_at in (("whole", 0), ("killed", 7)):
        out = tmp_path / name
        train = [str(ELASTIC_WORKER), str(die_at), "--", *RUN, "--save-every", "2"]
        runs[name] = finish(torchrun(launcher, [*train, "--output", str(out)]))[0]
    assert "restart 1 of this torchrun job: resuming from" in runs["killed"]
    events = [r for r in read_jsonl(tmp_path / "killed" / "log.jsonl") if "event" in r]
    resumed = next(r for r in events if r["event"] == "resume")
    assert resumed["step"] in (6, 7)  # the every-2 checkpoint, or the one saved after the loss
    assert_same(weights(tmp_path / "killed"), weights(tmp_path / "whole"))


def test_each_restart_meets_in_a_key_space_of_its_own(monkeypatch, capsys):
    """On one node under torchrun's shared store, attempt N's process group reads and writes
    under ``marginface/attempt_N/`` (never a dead worker's address); across nodes the store
    is left as it is, and a restart says what the launcher needs."""
    import torch.distributed as dist

    from marginface.training.distributed import _group_store

    port = free_port()
    agent = dist.TCPStore(
        "127.0.0.1", port, 1, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=10)
    )
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0"}
    for key, value in {**env, "TORCHELASTIC_USE_AGENT_STORE": "True"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    _group_store(2).set("rank_0", "new address")
    assert agent.get("marginface/attempt_2/rank_0") == b"new address"
    assert not agent.check(["rank_0"])
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert _group_store(2) is None
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in capsys.readouterr().err
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    assert _group_store(2) is None  # env:// as torch does it


def worker_pids(agent: subprocess.Popen) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == agent.pid:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.slow
def test_sigterm_to_every_worker_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    launcher = ["--standalone", "--nnodes", "1", "--nproc-per-node", "2"]
    longer = ["--epochs", "30", "--log-every", "1"]  # 120 steps: long enough to be stopped
    single_node(tmp_path / "whole", longer)
    out = tmp_path / "preempted"
    train = ["-m", "marginface", "train", *RUN, *longer, "--output", str(out)]
    agent = torchrun(launcher, train)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait for step 3 to be logged
        if log.is_file() and any(r.get("step", 0) >= 3 for r in read_jsonl(log)[-3:]):
            break
        time.sleep(0.02)
    sent = time.monotonic()
    pids = worker_pids(agent)
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    output = finish(agent, code=1)[0]  # torchrun's own code when a worker stops with another
    took = time.monotonic() - sent
    assert output.count("exitcode  : 130") >= 1  # the workers' code for "interrupted, saved"
    # a step of this run takes milliseconds: the stop comes at the next step boundary; the
    # bound leaves the processes' exit and a loaded machine ample room
    assert took < 30, output
    saved = next(r for r in reversed(read_jsonl(log)) if r.get("event") == "checkpoint")
    assert saved["reason"] == "interrupted" and saved["step"] < 120
    resume = ["-m", "marginface", "train", *RUN, *longer, "--output", str(out), "--resume"]
    finish(torchrun(launcher, resume))
    assert_same(weights(out), weights(tmp_path / "whole"))


def test_resume_at_another_world_size(tmp_path):
    from marginface.cli import main

    out = tmp_path / "run"
    args = [*RUN, "--output", str(out)]
    launch(WORKER, 2, [str(tmp_path), "--", *args, "--max-steps", "3"], timeout=240)
    # 3 steps of 2 x 4: the first 24 images of epoch 0 are done. One process, batch 4:
    # batch 6 of epoch 0 is the first that starts at or after image 24.
    one = tmp_path / "one"
    shutil.copytree(out, one)
    assert main(["train", *RUN, "--output", str(one), "--resume"]) == 0
    note = next(r for r in read_jsonl(one / "log.jsonl") if r.get("event") == "reshard")
    assert (note["saved_world_size"], note["world_size"]) == (2, 1)
    assert (note["items_done"], note["items_skipped"], note["epoch"], note["batch"]) == (
        24,
        0,
        0,
        6,
    )
    steps = [r["step"] for r in read_jsonl(one / "log.jsonl") if r["type"] == "train"]
    assert steps == list(range(1, 3 + 2 + 2 * 8 + 1))  # 2 more of epoch 0, 8 of each next
    # three processes, batch 4: 12 images a step, epoch 0 has 2 steps (24 images): done
    launch(WORKER, 3, [str(tmp_path), "--", *args, "--resume"], timeout=240)
    note = next(r for r in read_jsonl(out / "log.jsonl") if r.get("event") == "reshard")
    assert (note["world_size"], note["epoch"], note["batch"], note["items_skipped"]) == (3, 1, 0, 0)
    steps = [r["step"] for r in read_jsonl(out / "log.jsonl") if r["type"] == "train"]
    assert steps == list(range(1, 3 + 2 * 2 + 1))


@pytest.mark.parametrize("saved, now, done_batches", [(2, 1, 3), (2, 3, 1), (3, 2, 1), (1, 4, 5)])
def test_the_items_after_a_reshard_are_the_rest_of_the_epoch(saved, now, done_batches):
    """What the new ranks take from the resumed batch on is the epoch's permutation after the
    items already done (and the skipped ones), in order, dealt round-robin."""
    n, batch, seed, epoch = 96, 4, 5, 2
    done = done_batches * batch * saved
    start = -(-done // (batch * now))
    taken = [[i for b in EpochBatchSampler(n, batch, seed, epoch, start, r, now) for i, _ in b]
             for r in range(now)]  # fmt: skip
    perm = epoch_permutation(n, seed, epoch)
    usable = n // (batch * now) * batch * now
    dealt = np.stack([np.array(t).reshape(-1, batch) for t in taken], axis=1).reshape(-1)
    rest = perm[start * batch * now : usable]
    interleaved = rest.reshape(-1, batch, now).transpose(0, 2, 1).reshape(-1)
    np.testing.assert_array_equal(dealt, interleaved)
    assert start * batch * now - done < batch * now  # fewer than one global batch skipped
