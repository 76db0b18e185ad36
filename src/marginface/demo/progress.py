"""Progress of the whole demo: one tqdm bar per training run, with the overall ETA beside it.

Work is counted in training images (steps x batch size) because runs differ in batch size; the
overall ETA extrapolates the wall time per training image seen so far to the images left.
"""

from __future__ import annotations

import time
from typing import Any


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class DemoProgress:
    """Bars per run and an overall ETA.

    Args:
        total_images: training images of all runs together (the unit of work).
        enabled: draw bars (tqdm, to stderr); otherwise only count.
    """

    def __init__(self, total_images: int, enabled: bool = True) -> None:
        self.total = max(1, int(total_images))
        self.done = 0
        self.enabled = enabled
        self.start = time.perf_counter()
        self.work_time = 0.0  # wall seconds spent in training runs
        self._bar: Any = None
        self._images_per_step = 0
        self._t_run = 0.0

    def eta(self) -> float | None:
        """Seconds of training left (None before any step)."""
        if self.done == 0:
            return None
        elapsed = self.work_time + (time.perf_counter() - self._t_run if self._bar else 0.0)
        return elapsed / self.done * (self.total - self.done)

    def start_run(self, name: str, steps: int, images_per_step: int) -> None:
        """Open the bar of one run of ``steps`` optimizer steps."""
        from tqdm import tqdm

        self._images_per_step = images_per_step
        self._t_run = time.perf_counter()
        self._bar = tqdm(
            total=steps,
            desc=f"{name:<18}",
            unit="step",
            dynamic_ncols=True,
            disable=not self.enabled,
            leave=True,
        )

    def step(self, record: dict[str, Any]) -> None:
        """A training step finished (``on_step`` callback of ``marginface.training.train``)."""
        self.done += self._images_per_step
        if self._bar is None:
            return
        self._bar.update(1)
        eta = self.eta()
        self._bar.set_postfix(
            loss=f"{record.get('loss', float('nan')):.3f}",
            overall=f"{100 * self.done / self.total:.0f}%",
            eta_all=_clock(eta) if eta is not None else "?",
            refresh=False,
        )

    def end_run(self) -> None:
        """Close the current run's bar."""
        if self._bar is not None:
            self._bar.close()
            self.work_time += time.perf_counter() - self._t_run
            self._bar = None

    # ----------------------------------------------- runs in worker processes (demo/parallel.py)
    def start_parallel(self, jobs: int) -> None:
        """One bar over the training images of ``jobs`` runs going on side by side."""
        from tqdm import tqdm

        self._t_run = time.perf_counter()
        self._names: dict[int, str] = {}
        self._loss: dict[int, float] = {}
        self._bar = tqdm(
            total=self.total,
            initial=self.done,
            desc=f"{jobs} runs",
            unit="img",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not self.enabled,
            leave=True,
        )

    def parallel_start(self, job: int, name: str) -> None:
        self._names[job] = name

    def parallel_step(self, job: int, images: int, loss: float) -> None:
        """A worker's run finished a step of ``images`` training images."""
        self.done += images
        self._loss[job] = loss
        if self._bar is None:
            return
        self._bar.update(images)
        eta = self.eta()
        running = ", ".join(
            f"{self._names.get(j, j)} {v:.2f}" for j, v in sorted(self._loss.items())[-2:]
        )
        self._bar.set_postfix_str(
            f"{running}; eta_all {_clock(eta) if eta is not None else '?'}", refresh=False
        )

    def end_parallel(self) -> None:
        self.end_run()

    def write(self, text: str) -> None:
        """A line above the bars (or printed when bars are off)."""
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(text)
        else:
            print(text, flush=True)
