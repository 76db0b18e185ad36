"""Shared by the training tests: tiny CLI arguments, log readers, a 2-rank training run."""

import json
from pathlib import Path

import torch

from _support.launch import launch

#: one rank of a multi-process job: runs the real CLI and saves what the rank ended with
WORKER = Path(__file__).with_name("train_worker.py")

#: a tiny, fast run: 32 synthetic 16x16 images of 8 identities, batch 8 -> 4 steps per epoch
TINY = [
    "--data", "synthetic:8x4",
    "--backbone", "small_cnn",
    "--head", "arcface",
    "--image-size", "16",
    "--embedding-size", "16",
    "--batch-size", "8",
    "--lr", "0.05",
    "--quiet",
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


def run_two_ranks(tmp_path: Path, args: list[str]) -> tuple[dict, dict]:
    """Run ``marginface train ARGS`` as a 2-process gloo job on 127.0.0.1 (the environment
    torchrun would set); returns what each rank saved (train_worker.py)."""
    launch(WORKER, 2, [str(tmp_path), "--", *map(str, args)], timeout=240)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    return r0, r1
