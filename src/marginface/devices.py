"""Torch devices named on the command line or in a config: checked before any work."""

from __future__ import annotations

import torch


def resolve_device(preference: str, local_rank: int = 0, what: str = "device") -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; ``cuda`` ->
    ``cuda:LOCAL_RANK``. ValueError naming ``what`` for a device that is not valid or not
    present here (no CUDA, an index beyond the GPUs, an unknown name)."""
    text = str(preference)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(
            f"{what} {preference!r} is not a torch device (cpu, cuda, cuda:N)"
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"{what} {preference!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise ValueError(f"{what} {preference!r} asked for, but CUDA is not available here")
    index = local_rank if device.index is None else device.index
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ValueError(f"{what} {preference!r}: this machine has {count} GPU(s) (cuda:0..)")
    return torch.device("cuda", index)
