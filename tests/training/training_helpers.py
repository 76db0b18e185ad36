"""Shared by the training tests: tiny CLI arguments and log readers."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

#: one rank of a multi-process job: runs the real CLI and saves what the rank ended with
WORKER = Path(__file__).with_name("ddp_worker.py")

#: a tiny, fast run: 32 synthetic 16x16 images of 8 identities, batch 8 -> 4 steps per epoch
TINY = [
    "--data", "synthetic:8x4",
    "--backbone", "small_cnn",
    "--head", "arcface",
    "--image-size", "16",
    "--embedding-size", "16",
    "--batch-size", "8",
    "--lr", "0.05",
    "--no-progress",
    "--no-tensorboard",
    "--device", "cpu",
]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every train record in the run's log.jsonl."""
    return [
        (r["step"], r["loss"]) for r in read_jsonl(run_dir / "log.jsonl") if r["type"] == "train"
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(tmp_path: Path, args: list[str]) -> tuple[dict, dict]:
    """Run ``marginface train ARGS`` as a 2-process gloo job on 127.0.0.1 (the environment
    torchrun would set); returns what each rank saved (ddp_worker.py)."""
    port = _free_port()
    procs = []
    for rank in range(2):
        ranks = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        master = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        env = {**os.environ, **ranks, **master, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(WORKER), str(tmp_path), "--", *map(str, args)]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=240)[0].decode())
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    return r0, r1
