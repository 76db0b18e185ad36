"""Shared by the training tests: tiny CLI arguments and log readers."""

import json
from pathlib import Path

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
