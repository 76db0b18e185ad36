"""Ctrl-C (SIGINT) and SIGTERM during training: stop within moments, keep the last completed
step.

In a single process the step in progress is dropped: hooks on every module (before its
forward) and on every parameter (as its gradient is computed) raise :class:`StepAbandoned`
once a stop is requested, so the run stops after the operation in progress rather than at the
end of a step that can take minutes on a CPU; the trainer then goes back to the last step
boundary and saves it. The hooks are live only while a step's forward and backward passes
(or a validation) run, never during the optimizer's update, so the weights saved are always
those of a completed step. With several processes the step is finished instead (a process
leaving mid-step would leave the others waiting in a collective) and the stop is agreed at
the step boundary. A second Ctrl-C aborts at once without saving.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from torch import nn


class StepAbandoned(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a step (or a validation) once a stop is requested: its work is dropped."""


class StopFlag:
    """SIGINT / SIGTERM handler of a training run (a context manager; installed from the main
    thread only).

    Args:
        abandon: drop the step in progress on a stop request (single process); False: finish
            it and stop at the step boundary.
    """

    def __init__(self, abandon: bool = True) -> None:
        self.abandon = abandon
        self.requested = False
        self.hard = False
        self.requested_at: float | None = None
        self._live = False
        self._old: dict[int, Any] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            self.hard = True
            raise KeyboardInterrupt("second interrupt: stopping without saving")
        self.requested = True
        self.requested_at = time.perf_counter()
        what = (
            "dropping the step in progress and saving the last completed one"
            if self.abandon
            else "saving a checkpoint after this step"
        )
        print(
            f"\nmarginface train: stop requested; {what} (press Ctrl-C again to abort "
            "without saving)",
            flush=True,
        )

    def latency_s(self) -> float | None:
        """Seconds since the stop was requested (None when it was not)."""
        return None if self.requested_at is None else time.perf_counter() - self.requested_at

    def check(self) -> None:
        """Raise :class:`StepAbandoned` when a stop is requested inside a droppable section."""
        if self._live and self.requested:
            raise StepAbandoned("stop requested")

    @contextlib.contextmanager
    def droppable(self) -> Iterator[None]:
        """The work inside (a step's forward and backward passes, a validation) is dropped on
        a stop request, at the next module or gradient; also when the request came just
        before or during its last operation."""
        self._live = self.abandon
        try:
            self.check()
            yield
            self.check()
        finally:
            self._live = False

    def watch(self, model: nn.Module) -> None:
        """Put the checks on every module of ``model`` (before its forward) and on every
        parameter (its gradient); removed on exit. Nothing when the step is not dropped."""
        if not self.abandon:
            return

        def before_forward(module: nn.Module, args: Any) -> None:
            self.check()

        def on_grad(grad: Any) -> None:
            self.check()

        for module in model.modules():
            self._handles.append(module.register_forward_pre_hook(before_forward))
        for param in model.parameters():
            if param.requires_grad:
                self._handles.append(param.register_hook(on_grad))
