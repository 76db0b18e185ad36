"""Checks made before training starts: the output folder is writable, has room, is not inside
the dataset, holds no other run, and an earlier run's leftovers are set aside
(:func:`prepare_output`)."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from marginface.files import check_writable_dir, clean_stale_temporaries

#: optimizer slots per parameter (SGD: momentum; AdamW: two moments)
OPTIMIZER_SLOTS = {"sgd": 1, "adamw": 2}


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of the module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def estimate_output_bytes(backbone: nn.Module, head: nn.Module, optimizer: str) -> int:
    """Disk needed by a run's saved files, at their peak (a new file beside the old one).

    checkpoint.pt (backbone + head + optimizer slots) exists twice while it is replaced;
    model.pt and best/model.pt hold the backbone, each also twice during a replace.
    """
    slots = OPTIMIZER_SLOTS.get(optimizer, 2)
    model = tensor_bytes(backbone)
    checkpoint = (model + tensor_bytes(head)) * (1 + slots)
    return 2 * checkpoint + 3 * model


def check_output_inside_data(output: str | os.PathLike, data: str | None) -> None:
    """ValueError when the run folder lies inside a folder dataset: its files (and a ``best``
    sub-folder) would be read as images or as an identity by the next run."""
    if not data or data.startswith("synthetic:"):
        return
    root = Path(data)
    if not root.is_dir():
        return
    out, root = Path(output).resolve(), root.resolve()
    if out == root or root in out.parents:
        raise ValueError(
            f"--output {output} lies inside the dataset folder --data {data}; the run's files "
            "would become part of the dataset. Choose an output folder outside it"
        )


def set_aside_old_log(output: str | os.PathLike) -> list[Path]:
    """A fresh run in a folder where an earlier run left a log but no checkpoint (it crashed
    before saving one): move ``log.jsonl`` and ``tensorboard/`` to ``*.previous`` and warn,
    rather than append to them. Returns what was moved."""
    output = Path(output)
    moved = []
    for name, aside in (
        ("log.jsonl", "log.previous.jsonl"),
        ("tensorboard", "tensorboard.previous"),
    ):
        old = output / name
        if old.exists():
            target = output / aside
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(old, target)
            moved.append(target)
    if moved:
        warnings.warn(
            f"output folder {output} holds the log of an earlier run that saved no checkpoint; "
            f"it was moved to {', '.join(p.name for p in moved)} and this run starts a new log",
            stacklevel=2,
        )
    return moved


def check_output_dir(path: str | os.PathLike, needed_bytes: int = 0) -> Path:
    """Create ``path`` if needed and prove it is writable with ``needed_bytes`` free.

    Raises PermissionError (not writable) or OSError (not enough space), naming the folder
    and the numbers.
    """
    path = check_writable_dir(path, "output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"output folder {path} is not writable: {exc}") from exc
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise OSError(
            f"output folder {path}: not enough free disk space: {free / 1e6:.1f} MB free, the "
            f"run needs about {needed_bytes / 1e6:.1f} MB for its checkpoints and models"
        )
    return path


def prepare_output(output: Path, cfg: Any) -> None:
    """The run folder ``output`` of ``cfg`` is ours (locked): checked, and cleared of what a
    killed run left."""
    if not cfg.resume and (output / "checkpoint.pt").exists():
        raise ValueError(
            f"output folder {output} already holds a run (checkpoint.pt); pass "
            f"--resume to continue it or choose another --output"
        )
    check_output_inside_data(output, cfg.data)
    for folder in (output, output / "best"):
        clean_stale_temporaries(folder, every=True)  # locked: no writer of ours is alive
    if not cfg.resume:
        set_aside_old_log(output)
