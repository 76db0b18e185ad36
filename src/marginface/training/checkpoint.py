"""Training checkpoints (``OUTPUT/checkpoint.pt``): everything needed to continue exactly.

Keys: ``format``, ``backbone`` and ``head`` (state dicts, the head's state buffers included),
``optimizer``, ``scheduler``, ``scaler``, ``rng`` (torch CPU and CUDA, numpy, python),
``position`` (``epoch``, ``batch``: micro-batches done in that epoch, ``step``: optimizer steps
done in all, ``seed``: the data-order seed), ``best`` (best validation score so far),
``config`` (the TrainConfig as a dict), ``model_info`` (as in ``model.json``), ``world_size``.
Only tensors and plain Python values: it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginface.files import atomic_torch_save

FORMAT = 1


def capture_rng() -> dict[str, Any]:
    """The state of every random number generator the training uses, as tensors and lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put the generators back in the state :func:`capture_rng` saw."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format version) atomically to ``path``."""
    return atomic_torch_save({"format": FORMAT, **payload}, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint; ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ValueError(f"{path}: cannot read the checkpoint ({exc})") from exc
    needed = ("backbone", "head", "optimizer", "scheduler", "rng", "position", "config")
    missing = [k for k in needed if not isinstance(blob, dict) or k not in blob]
    if missing:
        raise ValueError(f"{path}: not a marginface training checkpoint (lacks {missing})")
    if blob.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {blob.get('format')}, expected {FORMAT}")
    return blob
