"""Run logs: JSON lines (``OUTPUT/log.jsonl``) and TensorBoard event files
(``OUTPUT/tensorboard/``).

Every line of ``log.jsonl`` is one JSON object with a ``type``: ``train`` (step, epoch, loss,
lr, images_per_s, ...), ``val`` (step, epoch, set name and its metrics) or ``event`` (start,
resume, checkpoint, stop, diverged). Only the main process writes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from marginface.files import atomic_write_text


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (a torn last line, from a crash, or any line that is
    not a JSON object, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(record, dict):  # anything else is not a record of ours
            records.append(record)
    return records


def truncate_log(path: str | os.PathLike, last_step: int) -> list[dict[str, Any]]:
    """Keep the records with ``step <= last_step`` (those of the checkpoint resumed from);
    rewrite the file atomically and return the kept records."""
    kept = [r for r in read_log(path) if r.get("step", 0) <= last_step]
    if Path(path).is_file():
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN / Infinity
    return value


class RunLogger:
    """Appends records to ``log.jsonl`` and numeric fields to TensorBoard.

    Args:
        output: the run folder.
        enabled: False on non-main ranks (then every call does nothing).
        tensorboard: also write TensorBoard event files.
        purge_step: on resume, TensorBoard drops events at or after this step.
    """

    def __init__(
        self,
        output: str | os.PathLike,
        enabled: bool = True,
        tensorboard: bool = True,
        purge_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = Path(output) / "log.jsonl"
        self._file = open(self.path, "a") if enabled else None  # noqa: SIM115 - kept open
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(output) / "tensorboard"), purge_step=purge_step)

    def log(self, record: dict[str, Any], prefix: str | None = None) -> None:
        """Write one record; its numeric fields go to TensorBoard as ``prefix/field``."""
        if not self.enabled:
            return
        assert self._file is not None
        self._file.write(json.dumps({k: _finite(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        if self._tb is not None and prefix is not None and "step" in record:
            for key, value in record.items():
                if key in ("step", "epoch") or isinstance(value, bool):
                    continue
                if isinstance(value, int | float):
                    self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])

    def event(self, name: str, step: int, **fields: Any) -> None:
        self.log({"type": "event", "event": name, "step": step, **fields})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
