"""A real Ctrl-C (SIGINT) to a running ``marginface train``: it stops at the next step boundary,
saves a checkpoint there, exits 130, and ``--resume`` continues exactly."""

import os
import signal
import subprocess
import sys
import time

import torch

from _support.training import TINY, train_losses


def _complete_train_lines(path) -> int:
    """Train records fully written so far (the last line may be caught half-written)."""
    if not path.is_file():
        return 0
    lines = path.read_text().split("\n")[:-1]  # drop the unterminated tail
    return sum('"type": "train"' in line for line in lines)


def test_sigint_saves_and_resume_is_exact(cli, tmp_path):
    out = tmp_path / "run"
    long_run = [*TINY, "--epochs", "300", "--output", str(out)]  # 1200 steps: never finishes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "marginface", "train", *long_run],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _complete_train_lines(out / "log.jsonl") >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "stop requested" in output and "--resume" in output
    logged = train_losses(out)
    stop = torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"]
    assert stop == len(logged) >= 3  # saved at the boundary of the last logged step

    end = stop + 3
    assert cli("--output", out, "--resume", "--quiet", "--max-steps", end) == 0
    straight = tmp_path / "straight"
    assert cli(*long_run[:-1], straight, "--max-steps", end) == 0
    assert train_losses(out) == train_losses(straight)
