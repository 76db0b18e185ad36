"""Training runs side by side in forked processes, with one progress display in the parent.

Small convolutions on a CPU scale poorly over threads, but two independent runs on two cores
scale almost perfectly: each worker process runs whole jobs (train + evaluate one head) on one
torch thread. Workers are forked, so they share the parent's rendered images copy-on-write; they
report their steps through a queue to the parent, which draws the bar.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from collections.abc import Callable, Sequence
from typing import Any

import torch

_QUEUE: Any = None  # the worker's end of the progress queue (set by the pool's initializer)
_CONTEXT: Any = None  # what every job shares (set before the fork: inherited, never pickled)


class QueueProgress:
    """The progress interface of :class:`marginface.demo.progress.DemoProgress` for a worker:
    every event goes to the parent through the queue."""

    def __init__(self, q: Any, job: int) -> None:
        self.q, self.job, self._images_per_step = q, job, 0

    def start_run(self, name: str, steps: int, images_per_step: int) -> None:
        self._images_per_step = images_per_step
        self.q.put(("start", self.job, name))

    def step(self, record: dict[str, Any]) -> None:
        self.q.put(("step", self.job, self._images_per_step, float(record.get("loss", "nan"))))

    def end_run(self) -> None:
        self.q.put(("end", self.job, None))

    def write(self, text: str) -> None:
        self.q.put(("write", self.job, text))


def _init(q: Any, threads: int) -> None:
    global _QUEUE
    _QUEUE = q
    torch.set_num_threads(threads)


def _call(fn: Callable[[Any, Any, Any], Any], job: Any, index: int) -> Any:
    return fn(_CONTEXT, job, QueueProgress(_QUEUE, index))


def run_jobs(
    fn: Callable[[Any, Any, Any], Any],
    context: Any,
    jobs: Sequence[Any],
    workers: int,
    progress: Any,
    threads: int = 1,
) -> list[Any]:
    """``[fn(context, job, progress) for job in jobs]``, in up to ``workers`` forked processes.

    ``fn`` is a module-level function (sent by name); ``context`` reaches the workers through
    the fork, unpickled. ``progress`` is the parent's
    :class:`~marginface.demo.progress.DemoProgress`; in the workers ``fn`` gets a
    :class:`QueueProgress` instead. With one worker, or where ``fork`` is not available, the
    jobs run here one after another. Results come back in job order; an exception in a job is
    raised here.
    """
    global _CONTEXT
    if workers <= 1 or len(jobs) <= 1 or "fork" not in mp.get_all_start_methods():
        return [fn(context, job, progress) for job in jobs]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    _CONTEXT = context
    try:
        with ctx.Pool(min(workers, len(jobs)), _init, (q, threads)) as pool:
            pending = [pool.apply_async(_call, (fn, job, i)) for i, job in enumerate(jobs)]
            progress.start_parallel(len(jobs))
            try:
                while not all(p.ready() for p in pending):
                    _drain(q, progress, timeout=0.2)
                _drain(q, progress, timeout=0.0)
                return [p.get() for p in pending]
            finally:
                progress.end_parallel()
    finally:
        _CONTEXT = None


def _drain(q: Any, progress: Any, timeout: float) -> None:
    """Hand the workers' events to the parent's progress display."""
    while True:
        try:
            event = q.get(timeout=timeout) if timeout else q.get_nowait()
        except queue_mod.Empty:
            return
        kind, job, *rest = event
        if kind == "step":
            progress.parallel_step(job, rest[0], rest[1])
        elif kind == "start":
            progress.parallel_start(job, rest[0])
        elif kind == "write":
            progress.write(rest[0])
        timeout = 0.0
