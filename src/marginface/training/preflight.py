"""Checks made before training starts: the output folder is writable and has room."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

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


def check_output_dir(path: str | os.PathLike, needed_bytes: int = 0) -> Path:
    """Create ``path`` if needed and prove it is writable with ``needed_bytes`` free.

    Raises PermissionError (not writable) or OSError (not enough space), naming the folder
    and the numbers.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"output folder {path} is not writable: {exc}") from exc
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise OSError(
            f"output folder {path}: not enough free disk space: {free / 1e6:.1f} MB free, the "
            f"run needs about {needed_bytes / 1e6:.1f} MB for its checkpoints and models"
        )
    return path
