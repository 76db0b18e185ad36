"""The checksum of a saved checkpoint: a sha256 over everything it holds.

``torch.load`` checks no checksum, so one flipped bit in a checkpoint's tensor data loads
silently with changed values. A training checkpoint therefore records, under ``checksum``,
the sha256 of the rest of its contents, and whoever loads it (``--resume``, ``load_model``)
checks it. The digest covers every tensor's place in the payload, dtype, shape and bytes, and
every plain value's place and repr, in order. A checkpoint without ``checksum`` (written
before checksums existed) loads unchecked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

#: the name of the digest recorded in ``checksum`` (what :func:`payload_digest` computes)
DIGEST = "sha256-tensors-and-values-1"


def leaves(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) of a payload in order: dict keys in insertion order, list items by index."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, f"{where}/{key!r}")
    elif isinstance(value, list | tuple):
        yield f"{where}:{type(value).__name__}{len(value)}", None
        for index, item in enumerate(value):
            yield from leaves(item, f"{where}[{index}]")
    else:
        yield where, value


def payload_digest(payload: Mapping[str, Any]) -> str:
    """The sha256 (hex) of a checkpoint's contents but its ``checksum``: each tensor's path,
    dtype, shape and bytes, each plain value's path and repr."""
    import torch

    digest = hashlib.sha256()
    for where, value in leaves({k: v for k, v in payload.items() if k != "checksum"}):
        digest.update(where.encode("utf-8", "backslashreplace") + b"\0")
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode() + b"\0")
            if t.numel():
                digest.update(t.reshape(-1).view(torch.uint8).numpy())  # no copy
        else:
            digest.update(repr(value).encode("utf-8", "backslashreplace") + b"\0")
    return digest.hexdigest()


def verify_checksum(blob: Mapping[str, Any], path: str | os.PathLike) -> bool:
    """Check the ``checksum`` of a loaded checkpoint: ValueError naming ``path`` when its
    contents changed since it was written; False for a checkpoint without one (older)."""
    recorded = blob.get("checksum") if isinstance(blob, Mapping) else None
    if recorded is None:
        return False
    if not isinstance(recorded, Mapping) or recorded.get("digest") != DIGEST:
        raise ValueError(f"{path}: unknown checksum {str(recorded)[:80]!r}; not a checkpoint "
                         "this version of marginface wrote")  # fmt: skip
    if payload_digest(blob) != recorded.get("value"):
        raise ValueError(
            f"{path}: checksum mismatch: its contents changed after it was written (a damaged "
            "copy or disk, a flipped bit); it cannot be trusted. Use another copy, or start "
            "the run again"
        )
    return True
