"""``train(config) -> TrainResult``: the real main of ``marginface train``.

One optimizer step = ``accumulate`` micro-batches of ``batch_size`` images per process. The
backbone embeds the images (under autocast when ``amp`` is set), the margin head's fused
``loss`` turns embeddings and labels into the mean cross-entropy (in float32), and backbone and
head parameters are optimised together. After every optimizer step the state needed for an
exact resume is known: weights, optimizer, schedule, grad scaler, the head's state buffers,
RNG states and the data position (epoch, micro-batch in the epoch, step).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from marginface.backbones.checkpoint import save_model
from marginface.files import FolderLock, atomic_write_text
from marginface.training import checkpoint as ckpt
from marginface.training import finetune
from marginface.training.config import TrainConfig, config_to_yaml
from marginface.training.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    fail_together,
    resume_after_restart,
    setup_distributed,
    wrap_data_parallel,
)
from marginface.training.divergence import TrainingDiverged, check_saved, check_weights, diverged
from marginface.training.estimate import SLOW_S, rest_of_run
from marginface.training.eta import Eta, clock, run_left
from marginface.training.interrupt import StepAbandoned, StopFlag
from marginface.training.logger import RunLogger
from marginface.training.optim import optimizer_step
from marginface.training.preflight import check_output_dir, estimate_output_bytes, prepare_output
from marginface.training.record import model_info, validate_for_calibration
from marginface.training.result import TrainResult
from marginface.training.run import Run, TrainModule, announce, build_run, with_monitors
from marginface.training.sampler import epoch_loader
from marginface.training.summary import nearer_own_summary
from marginface.training.validation import Validated, Validator, fit_to_epoch, flat_metrics
from marginface.training.verdict import run_verdict

__all__ = ["TrainModule", "TrainResult", "Trainer", "TrainingDiverged", "train"]

_log = logging.getLogger("marginface.train")


class Trainer:
    """One training run; :func:`train` is the way to use it.

    Every attribute is set in ``__init__`` (those of the run ``None`` until :meth:`_setup`).
    :meth:`_setup` builds the state of the run: :func:`~marginface.training.run.build_run`'s
    :class:`~marginface.training.run.Run` (``built``), the checkpoint's state when resuming
    (:func:`marginface.training.checkpoint.resume_run`), then the run's loss watch, validator
    and logger (:func:`~marginface.training.run.with_monitors`, read as :attr:`validator` and
    :attr:`logger`); :meth:`_loop` runs the epochs (:meth:`_epoch`), each optimizer step
    (:meth:`_step`) followed by :meth:`_after_step`, and ends the run (:meth:`_finish`).
    What is not the loop has the module named for it: the validations found so far
    (:class:`~marginface.training.validation.Validated`), ``model.json``'s info
    (:mod:`~marginface.training.record`), the CPU estimate
    (:mod:`~marginface.training.estimate`), divergence (:mod:`~marginface.training.divergence`),
    the end-of-run summary (:mod:`~marginface.training.summary`) and verdict
    (:mod:`~marginface.training.verdict`)."""

    def __init__(
        self,
        config: TrainConfig,
        env: DistEnv,
        dataset: Dataset | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.cfg, self.env = config, env
        self.output = Path(config.output)
        self.dataset = dataset  # the caller's, or None: cfg.data's (build_run opens it)
        self.on_step = on_step
        # built by _setup: the run (build_run, then with_monitors: its loss watch, validator
        # and logger)
        self.built: Run | None = None
        self._resume_rng: dict[str, Any] | None = None  # restored before the first step
        # what the run learns as it goes (a resumed run starts from the checkpoint's)
        self.history: list[dict[str, Any]] = []
        self.reshard: dict[str, int] | None = None  # resumed at another world size
        self.validated = Validated()  # best, threshold, last metrics, the step validated
        self._estimated = False  # the CPU estimate, after the first step
        self.eta = Eta()
        self.warnings: list[str] = []
        # while the loop runs: the progress bar, the stop flag, the last step boundary
        self.bar = None
        self.stop: StopFlag | None = None
        self.boundary: ckpt.Boundary | None = None
        # fine-tuning (cfg.init): what the run started from, its backbone, its frozen stages
        self.start: finetune.Start | None = None
        self.start_backbone: nn.Module | None = None
        self.frozen: list[str] = []
        # run a check on the main process; its error is raised on every process
        self._fail_together = functools.partial(fail_together, env=env)

    # ------------------------------------------------------------------------ setting up
    def _setup(self) -> tuple[dict[str, int], dict[str, Any] | None]:
        """Build the state of the run: data, model, classifier, optimizer, the checkpoint's
        state when resuming, loss watch, validator and logger. Returns the start position and
        the RNG state to restore before the first step (None for a fresh run)."""
        if self.cfg.init is not None:
            self.cfg, self.start_backbone, self.start, self.frozen = finetune.start_run(
                self.cfg, self.output, self._say
            )
        cfg, env = self.cfg, self.env
        run = self.built = build_run(
            cfg, env, self.dataset, backbone=self.start_backbone, say=self._say
        )
        position, rng = {"epoch": 0, "batch": 0, "step": 0}, None
        if cfg.resume:
            resumed = ckpt.resume_run(self.output, cfg, run, env.world_size, env.is_main)
            self.validated.best, self.validated.threshold = resumed.best, resumed.threshold
            self.reshard, self.history = resumed.reshard, resumed.history
            position, rng = resumed.position, resumed.rng
        needed = estimate_output_bytes(run.model.backbone, run.model.head, cfg.optimizer)
        self._fail_together(lambda: check_output_dir(self.output, needed + cfg.min_free_bytes))
        if env.is_main:
            scale_note = f"# {run.scale.describe()}\n"
            atomic_write_text(self.output / "config.yaml", config_to_yaml(cfg) + scale_note)
        self.built = with_monitors(
            run, cfg, env, step=position["step"], history=self.history,
            fail_together=self._fail_together,
        )  # fmt: skip
        if self.built.validator and cfg.val_max_pairs is None:
            fit_to_epoch(
                self.validator, cfg, run.steps_per_epoch, self.logger, position["step"], self._say
            )
        return position, rng

    @property
    def validator(self) -> Validator | None:
        """The run's validator (:attr:`built`'s), None without validation."""
        return self.built.validator

    @property
    def logger(self) -> RunLogger:
        """The run's logger (:attr:`built`'s)."""
        return self.built.logger

    # --------------------------------------------------------------------- checkpoints
    def save(self, position: dict[str, int], rng: dict[str, Any], reason: str) -> None:
        """checkpoint.pt + model.pt/model.json (main process only; write, then rename).

        Weights that are not finite are never written: TrainingDiverged instead."""
        model = self.built.model
        head_state = model.head.full_state_dict()  # collective with Partial FC
        if not self.env.is_main:
            return
        check_saved(model.backbone, head_state, self.output, self.logger, position)
        if reason == "max_steps":
            validate_for_calibration(self)
        info = model_info(self)
        payload = ckpt.run_payload(self.built, self.cfg, position, rng, head_state,
                                   self.validated.best, info, self.env.world_size)  # fmt: skip
        ckpt.write_run(self.output, payload, model.backbone, info)
        self.logger.event("checkpoint", position["step"], reason=reason, epoch=position["epoch"])

    # ------------------------------------------------------------------------ validation
    def validate(self, step: int, epoch: int) -> None:
        """Evaluate on the pair sets (main process), log, keep OUTPUT/best/ when it improves."""
        if self.env.is_main and self.validator and step != self.validated.step:
            self.validated.step = step
            t0 = time.perf_counter()
            with self.stop.droppable():  # a stop request drops the validation too
                results = self.validator.run(self.built.model.backbone)
            self.eta.validation(time.perf_counter() - t0)
            improved = self.validated.record(results, step, epoch)
            for name, metrics in results.items():
                record = {"type": "val", "step": step, "epoch": epoch, "set": name}
                self.logger.log({**record, **flat_metrics(metrics)}, prefix=f"val/{name}")
            if improved:
                save_model(self.output / "best", self.built.model.backbone, model_info(self))
                score, threshold = self.validated.best["score"], self.validated.threshold
                self.logger.event("best", step, score=score, threshold=threshold)
            if self.bar is not None:
                self.bar.write(
                    f"step {step}: "
                    + ", ".join(f"{n} acc {m['accuracy']:.4f}" for n, m in results.items())
                )
        barrier(self.env)

    # ------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        """Lock the run folder (main process), then :meth:`_run`; the lock goes with it."""
        lock = FolderLock(self.output, "run folder")
        self._fail_together(lambda: check_output_dir(self.output) and lock.acquire())
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> TrainResult:
        self._fail_together(lambda: prepare_output(self.output, self.cfg))
        position, self._resume_rng = self._setup()
        try:
            return self._loop(position)
        finally:
            if self.bar is not None:
                self.bar.close()
            self.logger.close()

    def _start(self, position: dict[str, int]) -> nn.Module:
        """Log the start, restore a resumed run's RNG, open the progress bar; the model to
        call (DDP around it when distributed)."""
        from tqdm import tqdm

        cfg, env = self.cfg, self.env
        names = [f"head.{n}" for n in self.built.model.head.synchronised_names()]
        ddp = wrap_data_parallel(self.built.model, env, names)
        announce(self.built, cfg, env, position, self.logger, self._say, self.start,
                 self.frozen, self.reshard)  # fmt: skip
        if self._resume_rng is not None:
            ckpt.restore_rng(self._resume_rng)
        self.bar = tqdm(
            total=self.built.total_steps,
            initial=position["step"],
            unit="step",
            dynamic_ncols=True,
            disable=not (cfg.progress and env.is_main),
            desc="train",
            # no tqdm estimate: it leaves the validations out; the postfix's eta has them
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )
        return ddp

    def _loop(self, position: dict[str, int]) -> TrainResult:
        """The epochs from ``position`` until the end, ``max_steps`` or a stop request."""
        ddp = self._start(position)
        stopped = "finished"
        t_start = time.perf_counter()
        self.boundary = ckpt.snapshot(self.built.model, position)
        with StopFlag(abandon=not self.env.distributed) as self.stop:
            self.stop.watch(self.built.model)
            try:
                while position["epoch"] < self.cfg.epochs and stopped == "finished":
                    position, stopped = self._epoch(position, ddp)
            except (KeyboardInterrupt, StepAbandoned):
                if self.stop.hard:
                    raise
                # interrupted inside a step: go back to the last step boundary and save it
                ckpt.restore(self.boundary, self.built.model, self.built.optimizer)
                stopped = "interrupted"
            except TrainingDiverged:
                raise  # the weights of the last step are not worth keeping
            except Exception as exc:
                ckpt.save_after_error(exc, self.boundary, self.built, self.save, self.output,
                                      self.env.is_main)  # fmt: skip
                raise
            if stopped != "finished":
                position = self._save_boundary(stopped)
        return self._finish(position, stopped, time.perf_counter() - t_start)

    def _save_boundary(self, stopped: str) -> dict[str, int]:
        """A run stopped early (``max_steps``, ``interrupted``): save its last step boundary,
        first saying how long after a stop request it stopped; the boundary's position."""
        position = self.boundary.position
        latency = self.stop.latency_s()  # from the request to the step boundary
        if latency is not None:
            self.logger.event("stop_request", position["step"], latency_s=latency)
            self._say(f"stopped {latency:.2f} s after the request; saving step "
                      f"{position['step']}")  # fmt: skip
        self.save(position, self.boundary.rng, stopped)
        return position

    def _finish(self, position: dict[str, int], stopped: str, elapsed: float) -> TrainResult:
        """The end of the run: the ``stop`` event, the summary and the verdict, the result."""
        barrier(self.env)
        step, built = position["step"], self.built
        self.logger.event("stop", step, reason=stopped, train_time_s=elapsed)
        summary = None
        if stopped != "interrupted":
            summary = nearer_own_summary(built, self.cfg, self.env, self.history, self.logger)
        stalled = built.watch.final_message()
        verdict = run_verdict(stopped, step, built.total_steps, summary, stalled, self.history,
                              self.logger)  # fmt: skip
        return TrainResult(
            output_dir=self.output,
            history=self.history,
            train_time_s=elapsed,
            backbone=built.model.backbone,
            head=built.model.head.state_module,
            stopped=stopped,
            steps=step,
            best=self.validated.best,
            validation=self.validated.last,
            scale=built.scale,
            warnings=list(self.warnings),
            summary=summary,
            verdict=verdict,
        )

    def _epoch(self, position: dict[str, int], ddp: nn.Module) -> tuple[dict[str, int], str]:
        """The rest of the epoch of ``position``: its steps, then validation and a checkpoint
        at its end. Returns the new position and ``finished``, ``max_steps`` or
        ``interrupted`` (the step boundary to save is then ``self.boundary``)."""
        cfg, epoch = self.cfg, position["epoch"]
        batches = iter(epoch_loader(self.built.dataset, cfg, self.env, epoch, position["batch"]))
        while position["batch"] < self.built.micro_per_epoch:
            if cfg.max_steps is not None and position["step"] >= cfg.max_steps:
                return position, "max_steps"
            t0 = time.perf_counter()
            record = self._step(batches, ddp, position)
            position["batch"] += cfg.accumulate
            position["step"] += 1
            self._after_step(position, record, time.perf_counter() - t0)
            step = position["step"]
            if cfg.val_every and step % cfg.val_every == 0:
                self.validate(step, epoch)
            if self.stop.requested:
                return position, "interrupted"
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                self.save(position, self.boundary.rng, "every")
        position = {"epoch": epoch + 1, "batch": 0, "step": position["step"]}
        if cfg.val and (not cfg.val_every or position["epoch"] == cfg.epochs):
            self.validate(position["step"], epoch)
        self.boundary = ckpt.snapshot(self.built.model, position)
        self.save(position, self.boundary.rng, "epoch")
        return position, "finished"

    def margin_weight(self, step: int) -> float:
        """The margin's share w at optimizer step ``step`` (0-based): linear from 0 over
        ``margin_warmup_epochs``, then 1. A function of the step, so a resume continues it."""
        warm = self.cfg.margin_warmup_epochs * self.built.steps_per_epoch
        return 1.0 if warm <= 0 else min(1.0, step / warm)

    def _step(self, batches, ddp: nn.Module, position: dict[str, int]) -> dict[str, Any] | None:
        """Accumulate ``accumulate`` micro-batches and take one optimizer step."""
        cfg, env, built = self.cfg, self.env, self.built
        k = cfg.accumulate
        built.model.head.head.margin_weight = self.margin_weight(position["step"])
        total = torch.zeros((), dtype=torch.float64)
        with self.stop.droppable():  # a stop request drops this step (single process)
            for i in range(k):
                images, labels = next(batches)
                images = images.to(env.device, non_blocking=True)
                labels = labels.to(env.device, non_blocking=True)
                sync = i == k - 1 or not env.distributed
                with contextlib.nullcontext() if sync else ddp.no_sync():
                    loss = ddp(images, labels)
                    built.scaler.scale(loss / k).backward()
                total += loss.detach().double().cpu()
        stats = torch.stack([total / k, torch.tensor(float(self.stop.requested))])
        stats = all_reduce_sum(stats.double(), env)
        mean_loss = float(stats[0]) / env.world_size
        if not math.isfinite(mean_loss):
            raise diverged(self.output, self.logger, mean_loss, position["step"], position["epoch"])
        lr = built.optimizer.param_groups[0]["lr"]
        record = optimizer_step(built, cfg.grad_clip)
        check_weights(built.model, env, self.output, self.logger, position)
        record.update(loss=mean_loss, lr=lr)
        if stats[1] > 0:
            self.stop.requested = True
        return record

    def _after_step(self, position: dict[str, int], record: dict[str, Any], seconds: float):
        """Record the completed step: history, loss watch, step boundary, log, progress."""
        cfg, step, epoch = self.cfg, position["step"], position["epoch"]
        speed = cfg.batch_size * cfg.accumulate * self.env.world_size / max(seconds, 1e-9)
        record = {"type": "train", "step": step, "epoch": epoch, **record, "images_per_s": speed}
        self.history.append(record)
        message = self.built.watch.update(step, record["loss"])
        if message is not None:
            self.warnings.append(message)
            self.logger.event("loss_watch", step, message=message)
            self._say(message, logging.WARNING)
        if self.env.device.type == "cpu" and self.env.is_main and not self._estimated:
            self._estimate(position, seconds)
        self.boundary = ckpt.snapshot(self.built.model, position)  # this completed step
        if step % cfg.log_every == 0 or step == self.built.total_steps:
            self.logger.log(record, prefix="train")
        if self.on_step is not None and self.env.is_main:
            self.on_step(record)
        self.eta.step(seconds)
        self.bar.update(1)
        left = run_left(self.eta, cfg, self.built.total_steps, self.validator, position)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.3g}",
                             img_s=f"{speed:.0f}", epoch=epoch, eta=clock(left))  # fmt: skip

    def _estimate(self, position: dict[str, int], step_seconds: float) -> None:
        """After the first step on a CPU: a run of more than half an hour says so, with a
        setting that fits (:mod:`marginface.training.estimate`)."""
        self._estimated = True
        cfg, val_images = self.cfg, self.validator.images_per_run()
        estimate = rest_of_run(cfg, self.built.total_steps, val_images, position, step_seconds)
        self.logger.event("estimate", position["step"], seconds=estimate.seconds,
                          per_image_s=estimate.per_image_s)  # fmt: skip
        if estimate.seconds > SLOW_S:
            self._say(estimate.line(cfg.backbone, cfg.image_size), logging.WARNING)

    def _say(self, text: str, level: int = logging.INFO) -> None:
        """A line for the user (main process) through the ``marginface.train`` logger:
        ``marginface train`` shows INFO and above; a library caller sees warnings (Python's
        default) unless it configures logging."""
        if self.env.is_main:
            _log.log(level, text)


def train(
    config: TrainConfig | dict[str, Any],
    *,
    dataset: Dataset | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a backbone with a margin head; the real main of ``marginface train``.

    Args:
        config: a :class:`TrainConfig` or a dict of its keys.
        dataset: optional map-style dataset of ``(image (3, S, S), label)`` with a
            ``num_classes`` attribute (and ideally ``identity_names``), used instead of
            opening ``config.data`` (library use).
        on_step: optional callable, called on the main process after every optimizer step
            with that step's record (step, epoch, loss, lr, images_per_s, ...), e.g. to drive
            a progress display of one's own (with ``progress=False``).

    Writes into ``config.output``: ``config.yaml``, ``checkpoint.pt`` (every epoch, on
    ``max_steps`` and on interrupt), ``model.pt`` + ``model.json``, ``log.jsonl``,
    ``tensorboard/`` and, with validation, ``best/``. Raises :class:`TrainingDiverged` on a
    NaN/inf loss, ValueError / OSError for bad settings or a full / unwritable output folder.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg = resume_after_restart(cfg)
    env = setup_distributed(cfg.device)
    try:
        return Trainer(cfg, env, dataset, on_step).run()
    finally:
        cleanup_distributed(env)
