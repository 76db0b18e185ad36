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
import dataclasses
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from marginface.backbones.checkpoint import save_model
from marginface.files import FolderLock, atomic_write_text, clean_stale_temporaries
from marginface.heads import MarginHead
from marginface.training import checkpoint as ckpt
from marginface.training import finetune
from marginface.training.config import TrainConfig, config_to_yaml
from marginface.training.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup_distributed,
    setup_distributed,
    wrap_data_parallel,
)
from marginface.training.estimate import SLOW_S, cpu_estimate
from marginface.training.eta import Eta, clock, validations_left
from marginface.training.interrupt import StepAbandoned, StopFlag
from marginface.training.logger import RunLogger, truncate_log
from marginface.training.preflight import (
    check_output_dir,
    check_output_inside_data,
    estimate_output_bytes,
    set_aside_old_log,
)
from marginface.training.record import run_records, validate_for_calibration
from marginface.training.run import Run, TrainModule, build_run, with_monitors
from marginface.training.sampler import EpochBatchSampler, SeededItems
from marginface.training.validation import (
    VAL_SHARE,
    Validator,
    flat_metrics,
    image_budget,
    score_of,
)
from marginface.training.verdict import Verdict, training_verdict
from marginface.training.watch import LossWatch

__all__ = ["TrainModule", "TrainResult", "Trainer", "TrainingDiverged", "train"]

_log = logging.getLogger("marginface.train")
#: what the run's log says of each path of the fused loss (marginface.heads.choose_path)
LOSS_PATHS = {
    "torch": "the chunked PyTorch path (MARGINFACE_FUSED_PATH=triton takes the Triton kernel on "
    "CUDA)",
    "triton": "the Triton kernel (MARGINFACE_FUSED_PATH=triton)",
}


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint was kept."""


def _all_finite(tensors: list[Tensor]) -> bool:
    """True when every floating tensor is finite (one fused norm per tensor, one sync)."""
    floats = [t.detach() for t in tensors if t.is_floating_point() and t.numel()]
    if not floats:
        return True
    norms = torch._foreach_norm(floats)
    return bool(torch.isfinite(torch.stack([n.float() for n in norms]).sum()))


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``head``: the trained margin head, or with Partial FC the PartialFC module (this process's
    shard and its state). ``history``: one dict per optimizer step (step, epoch, loss, lr,
    images_per_s, ...), of the whole run (a resumed run includes the steps logged before the
    interruption).
    ``stopped``: ``finished``, ``max_steps`` or ``interrupted``. ``best``: the best validation
    (step, score, threshold) or None. ``validation``: the last validation metrics per set.
    ``scale``: how the head's scale was set (:class:`marginface.heads.scale.ScaleChoice`).
    ``warnings``: what the loss watch reported. ``summary``: at the end (None when off or
    interrupted) ``nearer_own_share``, the share of ``images`` training images (up to
    ``summary_images``) nearer their own class centre than any other. ``verdict``: the
    one-line verdict on the final numbers of the whole run
    (:class:`marginface.training.verdict.Verdict`: ``trained``, ``line``).
    """

    output_dir: Path
    history: list[dict[str, Any]]
    train_time_s: float
    backbone: nn.Module
    head: nn.Module
    stopped: str = "finished"
    steps: int = 0
    best: dict[str, Any] | None = None
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: Any = None
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    verdict: Verdict | None = None


def _ignore_sigint(worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops at a step boundary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Trainer:
    """One training run; :func:`train` is the way to use it.

    Every attribute is set in ``__init__`` (those of the run ``None`` until :meth:`_setup`).
    :meth:`_setup` builds the state of the run: :func:`~marginface.training.run.build_run`'s
    :class:`~marginface.training.run.Run` (``built``), the checkpoint's state when resuming
    (:mod:`marginface.training.checkpoint`), then the run's loss watch, validator and logger
    (:func:`~marginface.training.run.with_monitors`, read as :attr:`watch`,
    :attr:`validator` and :attr:`logger`);
    :meth:`_loop` runs the epochs (:meth:`_epoch`), each optimizer step (:meth:`_step`)
    followed by :meth:`_after_step`."""

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
        self.best: dict[str, Any] | None = None
        self.last_validation: dict[str, dict[str, Any]] = {}
        self.threshold: float | None = None
        self._last_val_step = -1
        self._calibration: tuple[int, Any] | None = None  # training.record's, per step
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

    # ------------------------------------------------------------------------ setting up
    def _fail_together(self, check) -> Any:
        """Run ``check`` on rank 0; if it raised, raise the same error on every rank."""
        error, value = None, None
        if self.env.is_main:
            try:
                value = check()
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                error = exc
        error = broadcast_object(error, self.env)
        if error is not None:
            raise error
        return value

    def _setup(self) -> tuple[dict[str, int], dict[str, Any] | None]:
        """Build the state of the run: data, model, classifier, optimizer, the checkpoint's
        state when resuming, loss watch, validator and logger. Returns the start position and
        the RNG state to restore before the first step (None for a fresh run)."""
        if self.cfg.init is not None:
            self._start_model()
        cfg, env = self.cfg, self.env
        run = self.built = build_run(
            cfg, env, self.dataset, backbone=self.start_backbone, say=self._say
        )
        position, rng = {"epoch": 0, "batch": 0, "step": 0}, None
        if cfg.resume:
            position, rng = self._resume()
        needed = estimate_output_bytes(run.model.backbone, run.model.head, cfg.optimizer)
        self._fail_together(lambda: check_output_dir(self.output, needed + cfg.min_free_bytes))
        if env.is_main:
            scale_note = f"# {run.scale.describe()}\n"
            atomic_write_text(self.output / "config.yaml", config_to_yaml(cfg) + scale_note)
        self.built = with_monitors(
            run,
            cfg,
            env,
            step=position["step"],
            history=self.history,
            fail_together=self._fail_together,
        )
        if self.built.validator and cfg.val_max_pairs is None:
            self._size_validation(position)
        return position, rng

    def _start_model(self) -> None:
        """Fine-tuning: the backbone from ``init`` (on --resume rebuilt from the checkpoint),
        the run's model keys from it, its first stages frozen; say so before anything runs."""
        saved = self.output / "checkpoint.pt"
        checkpoint = saved if self.cfg.resume and saved.is_file() else None
        self.cfg, self.start_backbone, self.start = finetune.start_model(self.cfg, checkpoint)
        self.frozen = finetune.freeze(self.start_backbone, self.cfg.freeze)
        for line in finetune.plan(self.cfg, self.start, self.start_backbone, self.frozen):
            self._say(line)

    def _size_validation(self, position: dict[str, int]) -> None:
        """Cut the generated pair sets to the time budget (:func:`image_budget`); logged."""
        cfg = self.cfg
        per_epoch = self.built.steps_per_epoch / cfg.val_every if cfg.val_every else 1
        budget = image_budget(
            self.built.steps_per_epoch * cfg.batch_size * cfg.accumulate, per_epoch
        )
        for entry in self.validator.fit(budget):
            sizes = {k: v for k, v in entry.items() if k != "name"}
            self.logger.event(
                "validation_size", position["step"], set=entry["name"], budget=budget, **sizes
            )
            if entry["cut"]:
                self._say(
                    f"validation on {entry['name']}: the first {entry['pairs']} pairs "
                    f"({entry['images']} images), under {VAL_SHARE:.0%} of an epoch's time "
                    "(--max-pairs N sets the number instead)"
                )

    def model_info(self) -> dict[str, Any]:
        """The ``model.json`` info of the backbone being trained (fine-tuned: with the start
        model's input contract and an ``init`` record of where it started)."""
        start = self.start
        return {
            "backbone": self.cfg.backbone,
            "backbone_kwargs": dict(self.built.backbone_kwargs),
            "image_size": self.cfg.image_size,
            "identity_names": self.built.identity_names,
            "threshold": self.threshold,
            "head": self.cfg.head,
            "head_kwargs": self.margin_head.hparams(),
            **(start.inherited() if start else {}),
            **({"init": start.record()} if start else {}),
            **run_records(self),  # training record, calibration of validated weights
        }

    @property
    def watch(self) -> LossWatch:
        """The run's loss watch (:attr:`built`'s)."""
        return self.built.watch

    @property
    def validator(self) -> Validator | None:
        """The run's validator (:attr:`built`'s), None without validation."""
        return self.built.validator

    @property
    def logger(self) -> RunLogger:
        """The run's logger (:attr:`built`'s)."""
        return self.built.logger

    @property
    def margin_head(self) -> MarginHead:
        """The margin head (with Partial FC: this rank's shard of it)."""
        return self.built.model.head.head

    # --------------------------------------------------------------------- checkpoints
    def save(self, position: dict[str, int], rng: dict[str, Any], reason: str) -> None:
        """checkpoint.pt + model.pt/model.json (main process only; write, then rename).

        Weights that are not finite are never written: TrainingDiverged instead."""
        head_state = self.built.model.head.full_state_dict()  # collective with Partial FC
        if not self.env.is_main:
            return
        tensors = [*self.built.model.backbone.state_dict().values()]
        tensors += [v for v in (head_state or {}).values() if isinstance(v, Tensor)]
        if not _all_finite(tensors):
            raise self._diverged("non-finite weights", position["step"] - 1, position["epoch"])
        if reason == "max_steps":
            validate_for_calibration(self)
        info = self.model_info()
        payload = ckpt.run_payload(
            self.built, self.cfg, position, rng, head_state, self.best, info, self.env.world_size
        )
        ckpt.write_run(self.output, payload, self.built.model.backbone, info)
        self.logger.event("checkpoint", position["step"], reason=reason, epoch=position["epoch"])

    def _resume(self) -> tuple[dict[str, int], dict[str, Any]]:
        """Load the checkpoint into the state just built; the position and RNG state to
        continue from."""
        path = self.output / "checkpoint.pt"
        resumed = ckpt.resume_into(path, self.cfg, self.built, self.built.num_classes)
        self.best, self.threshold = resumed.best, resumed.threshold
        position = resumed.position
        if resumed.world_size != self.env.world_size:
            position = self._reshard_position(position, resumed.world_size)
        if self.env.is_main:
            kept = truncate_log(self.output / "log.jsonl", position["step"])
            self.history = [r for r in kept if r.get("type") == "train"]
        return position, resumed.rng

    def _reshard_position(self, position: dict[str, int], saved_world: int) -> dict[str, int]:
        """Where a run saved by ``saved_world`` processes continues with this many.

        An epoch's permutation does not depend on the number of processes, and its first
        ``batch x batch_size x saved_world`` items are the ones already trained on. The run goes
        on at the first batch of the new world size that starts at or after that many items
        (skipping fewer than one global batch of this epoch), on a step boundary; past the
        epoch's last batch it goes on with the next epoch."""
        cfg, world = self.cfg, self.env.world_size
        done = position["batch"] * cfg.batch_size * saved_world
        global_batch = cfg.batch_size * world * cfg.accumulate
        batch = -(-done // global_batch) * cfg.accumulate
        moved = {"epoch": position["epoch"], "batch": batch, "step": position["step"]}
        if batch >= self.built.micro_per_epoch:
            moved = {"epoch": position["epoch"] + 1, "batch": 0, "step": position["step"]}
        reached = min(batch, self.built.micro_per_epoch) * cfg.batch_size * world
        skipped = max(0, reached - done)
        self.reshard = {
            "saved_world_size": saved_world,
            "world_size": world,
            "items_done": done,
            "items_skipped": skipped,
            "epoch": moved["epoch"],
            "batch": moved["batch"],
        }
        return moved

    # ------------------------------------------------------------------------ validation
    def validate(self, step: int, epoch: int) -> None:
        """Evaluate on the pair sets (main process), log, keep OUTPUT/best/ when it improves."""
        if self.env.is_main and self.validator and step != self._last_val_step:
            self._last_val_step = step
            t0 = time.perf_counter()
            with self.stop.droppable():  # a stop request drops the validation too
                results = self.validator.run(self.built.model.backbone)
            self.eta.validation(time.perf_counter() - t0)
            self.last_validation = results
            first = next(iter(results.values()))
            self.threshold = float(first["best_threshold"])
            for name, metrics in results.items():
                record = {"type": "val", "step": step, "epoch": epoch, "set": name}
                self.logger.log({**record, **flat_metrics(metrics)}, prefix=f"val/{name}")
            score = score_of(results)
            if self.best is None or score > self.best["score"]:
                self.best = {
                    "step": step,
                    "epoch": epoch,
                    "score": score,
                    "threshold": self.threshold,
                }
                save_model(self.output / "best", self.built.model.backbone, self.model_info())
                self.logger.event("best", step, score=score, threshold=self.threshold)
            if self.bar is not None:
                self.bar.write(
                    f"step {step}: "
                    + ", ".join(f"{n} acc {m['accuracy']:.4f}" for n, m in results.items())
                )
        barrier(self.env)

    # ------------------------------------------------------------------------- the loop
    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        cfg, env = self.cfg, self.env
        sampler = EpochBatchSampler(
            len(self.built.dataset),
            cfg.batch_size,
            cfg.seed,
            epoch,
            start_batch,
            env.rank,
            env.world_size,
        )
        return DataLoader(
            SeededItems(self.built.dataset),
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=env.device.type == "cuda",
            worker_init_fn=_ignore_sigint if cfg.num_workers else None,
            generator=torch.Generator(),  # the loader never draws from the global RNG
        )

    def _snapshot(self, position: dict[str, int]) -> None:
        """Remember the state at this step boundary (:class:`~.checkpoint.Boundary`)."""
        self.boundary = ckpt.snapshot(self.built.model, position)

    def _restore_boundary(self) -> None:
        ckpt.restore(self.boundary, self.built.model, self.built.optimizer)

    def _diverged(self, what: float | str, step: int, epoch: int) -> TrainingDiverged:
        """``what``: the non-finite loss, or a description of what became non-finite."""
        path = self.output / "checkpoint.pt"
        kept = (
            f"the last good checkpoint {path} was kept"
            if path.is_file()
            else ("no checkpoint had been saved yet")
        )
        self.logger.event("diverged", step, loss=str(what), epoch=epoch)
        became = f"the loss became {what}" if isinstance(what, float) else f"{what} appeared"
        return TrainingDiverged(
            f"{became} at step {step + 1} (epoch {epoch}); training stopped and "
            f"{kept}. Try a lower --lr, a longer --warmup-epochs, --grad-clip, or --amp none."
        )

    def margin_weight(self, step: int) -> float:
        """The margin's share w at optimizer step ``step`` (0-based): linear from 0 over
        ``margin_warmup_epochs``, then 1. A function of the step, so a resume continues it."""
        warm = self.cfg.margin_warmup_epochs * self.built.steps_per_epoch
        return 1.0 if warm <= 0 else min(1.0, step / warm)

    def _say(self, text: str, level: int = logging.INFO) -> None:
        """A line for the user (main process) through the ``marginface.train`` logger:
        ``marginface train`` shows INFO and above; a library caller sees warnings (Python's
        default) unless it configures logging."""
        if self.env.is_main:
            _log.log(level, text)

    def _watch(self, record: dict[str, Any]) -> None:
        message = self.watch.update(record["step"], record["loss"])
        if message is not None:
            self.warnings.append(message)
            self.logger.event("loss_watch", record["step"], message=message)
            self._say(message, logging.WARNING)

    def _summary(self) -> dict[str, Any] | None:
        """Share of up to ``summary_images`` training images nearer their own class centre
        (main process; the centres of every rank with Partial FC: collective)."""
        n = min(self.cfg.summary_images, len(self.built.dataset))
        if n == 0:
            return None
        weight = self.built.model.head.full_weight()  # collective with Partial FC
        if not self.env.is_main or weight is None:
            return None
        from marginface.evaluation.angles import (
            centre_angles,
            class_centres,
            embed_raw,
            nearer_own_share,
        )

        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        idx = torch.randperm(len(self.built.dataset), generator=rng)[:n].sort().values.tolist()
        features, labels = [], []
        devices_rng = ckpt.capture_rng()  # augmenting datasets draw from the global RNG
        try:
            for start in range(0, n, 256):  # a batch of images in memory at a time
                items = [self.built.dataset[i] for i in idx[start : start + 256]]
                images = torch.stack([torch.as_tensor(im) for im, _ in items])
                features.append(embed_raw(self.built.model.backbone, images, self.env.device))
                labels += [int(y) for _, y in items]
        finally:
            ckpt.restore_rng(devices_rng)
        centres = class_centres(self.margin_head, weight)
        share = nearer_own_share(*centre_angles(torch.cat(features), torch.tensor(labels), centres))
        summary = {"nearer_own_share": share, "images": n}
        self.logger.event("summary", self.history[-1]["step"] if self.history else 0, **summary)
        return summary

    def _save_after_error(self, exc: Exception) -> None:
        """Save the last completed step before ``exc`` is reported, so no work is lost.

        Not when saving the classifier is collective (Partial FC over several processes):
        the other processes may be stuck elsewhere."""
        position = self.boundary.position
        if self.built.model.head.collective_state or position["step"] == 0:
            return
        self._restore_boundary()
        try:
            self.save(position, self.boundary.rng, "error")
        except Exception as save_error:  # noqa: BLE001 - the first error is the one to report
            exc.add_note(f"saving a checkpoint after it failed too: {save_error}")
            return
        if self.env.is_main:
            exc.add_note(
                f"checkpoint of step {position['step']} saved in {self.output}; continue with "
                f"marginface train --output {self.output} --resume"
            )

    def _step(self, batches, ddp: nn.Module, position: dict[str, int]) -> dict[str, Any] | None:
        """Accumulate ``accumulate`` micro-batches and take one optimizer step."""
        cfg, env = self.cfg, self.env
        k = cfg.accumulate
        self.margin_head.margin_weight = self.margin_weight(position["step"])
        total = torch.zeros((), dtype=torch.float64)
        with self.stop.droppable():  # a stop request drops this step (single process)
            for i in range(k):
                images, labels = next(batches)
                images = images.to(env.device, non_blocking=True)
                labels = labels.to(env.device, non_blocking=True)
                sync = i == k - 1 or not env.distributed
                with contextlib.nullcontext() if sync else ddp.no_sync():
                    loss = ddp(images, labels)
                    self.built.scaler.scale(loss / k).backward()
                total += loss.detach().double().cpu()
        stats = torch.stack([total / k, torch.tensor(float(self.stop.requested))])
        stats = all_reduce_sum(stats.double(), env)
        mean_loss = float(stats[0]) / env.world_size
        if not math.isfinite(mean_loss):
            raise self._diverged(mean_loss, position["step"], position["epoch"])
        lr = self.built.optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {}
        if cfg.grad_clip is not None:
            self.built.scaler.unscale_(self.built.optimizer)
            norm = nn.utils.clip_grad_norm_(self.built.model.parameters(), cfg.grad_clip)
            record["grad_norm"] = float(norm)
        self.built.scaler.step(self.built.optimizer)
        self.built.scaler.update()
        self.built.optimizer.zero_grad(set_to_none=True)
        self.built.scheduler.step()
        finite = torch.tensor([float(_all_finite(list(self.built.model.parameters())))])
        if float(all_reduce_sum(finite.double(), env)[0]) < env.world_size:
            raise self._diverged("non-finite weights", position["step"], position["epoch"])
        record.update(loss=mean_loss, lr=lr)
        if stats[1] > 0:
            self.stop.requested = True
        return record

    def run(self) -> TrainResult:
        """Lock the run folder (main process), then :meth:`_run`; the lock goes with it."""
        lock = FolderLock(self.output, "run folder")
        self._fail_together(lambda: check_output_dir(self.output) and lock.acquire())
        try:
            return self._run()
        finally:
            lock.release()

    def _fresh_output(self) -> None:
        """The run folder is ours (locked): checked, and cleared of what a killed run left."""
        cfg = self.cfg
        if not cfg.resume and (self.output / "checkpoint.pt").exists():
            raise ValueError(
                f"output folder {self.output} already holds a run (checkpoint.pt); pass "
                f"--resume to continue it or choose another --output"
            )
        check_output_inside_data(self.output, cfg.data)
        for folder in (self.output, self.output / "best"):
            clean_stale_temporaries(folder, every=True)  # locked: no writer of ours is alive
        if not cfg.resume:
            set_aside_old_log(self.output)

    def _run(self) -> TrainResult:
        self._fail_together(self._fresh_output)
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
        self.logger.event(
            "resume" if cfg.resume else "start",
            position["step"],
            epoch=position["epoch"],
            world_size=env.world_size,
            device=str(env.device),
            steps=self.built.total_steps,
        )
        if self.reshard is not None:
            note = self.reshard
            self.logger.event("reshard", position["step"], **note)
            self._say(
                f"resuming a run saved by {note['saved_world_size']} process(es) with "
                f"{note['world_size']}: epoch {note['epoch']} goes on after its first "
                f"{note['items_done']} images ({note['items_skipped']} skipped to reach a whole "
                "global batch)"
            )
        if self.start is not None:
            self.logger.event(
                "init",
                position["step"],
                **self.start.record(),
                centres=cfg.init_centres,
                imprinted=self.built.imprinted,
                backbone_lr=cfg.backbone_lr,
                frozen=self.frozen,
            )
        choice = self.built.scale
        self.logger.event(
            "scale", position["step"], head=cfg.head, s=choice.value, rule=choice.rule
        )
        self._say(choice.describe())
        self.logger.event("loss_path", position["step"], path=self.built.loss_path)
        self._say(f"loss: {LOSS_PATHS[self.built.loss_path]} on {env.device.type}")
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

    def _cpu_estimate(self, position: dict[str, int], step_seconds: float) -> None:
        """After the first step on a CPU: a run of more than half an hour says so, with a
        setting that fits (:mod:`marginface.training.estimate`)."""
        cfg = self.cfg
        self._estimated = True
        end = min(self.built.total_steps, cfg.max_steps or self.built.total_steps)
        steps = max(0, end - position["step"])
        val_runs = (
            steps // cfg.val_every if cfg.val_every else cfg.epochs - position["epoch"]
        ) * bool(cfg.val)
        estimate = cpu_estimate(
            cfg.backbone,
            cfg.image_size,
            cfg.embedding_size,
            cfg.backbone_kwargs,
            step_seconds=step_seconds,
            images_per_step=cfg.batch_size * cfg.accumulate,
            train_images=steps * cfg.batch_size * cfg.accumulate,
            val_images=val_runs * self.validator.images_per_run(),
        )
        self.logger.event(
            "estimate", position["step"], seconds=estimate.seconds, per_image_s=estimate.per_image_s
        )
        if estimate.seconds > SLOW_S:
            self._say(estimate.line(cfg.backbone, cfg.image_size), logging.WARNING)

    def _loop(self, position: dict[str, int]) -> TrainResult:
        """The epochs from ``position`` until the end, ``max_steps`` or a stop request."""
        ddp = self._start(position)
        stopped = "finished"
        t_start = time.perf_counter()
        self._snapshot(position)
        with StopFlag(abandon=not self.env.distributed) as self.stop:
            self.stop.watch(self.built.model)
            try:
                while position["epoch"] < self.cfg.epochs and stopped == "finished":
                    position, stopped = self._epoch(position, ddp)
            except (KeyboardInterrupt, StepAbandoned):
                if self.stop.hard:
                    raise
                # interrupted inside a step: go back to the last step boundary and save it
                self._restore_boundary()
                stopped = "interrupted"
            except TrainingDiverged:
                raise  # the weights of the last step are not worth keeping
            except Exception as exc:
                self._save_after_error(exc)
                raise
            if stopped != "finished":
                position = self.boundary.position
                latency = self.stop.latency_s()  # from the request to the step boundary
                if latency is not None:
                    self.logger.event("stop_request", position["step"], latency_s=latency)
                    self._say(f"stopped {latency:.2f} s after the request; saving step "
                              f"{position['step']}")  # fmt: skip
                self.save(position, self.boundary.rng, stopped)
        barrier(self.env)
        elapsed = time.perf_counter() - t_start
        self.logger.event("stop", position["step"], reason=stopped, train_time_s=elapsed)
        summary = self._summary() if stopped != "interrupted" else None
        verdict = self._verdict(stopped, position["step"], summary)
        return TrainResult(
            output_dir=self.output,
            history=self.history,
            train_time_s=elapsed,
            backbone=self.built.model.backbone,
            head=self.built.model.head.state_module,
            stopped=stopped,
            steps=position["step"],
            best=self.best,
            validation=self.last_validation,
            scale=self.built.scale,
            warnings=list(self.warnings),
            summary=summary,
            verdict=verdict,
        )

    def _verdict(self, stopped: str, step: int, summary: dict[str, Any] | None) -> Verdict:
        """The one-line verdict from the final numbers of the whole run (logged)."""
        losses = [r["loss"] for r in self.history]
        verdict = training_verdict(
            stopped=stopped,
            steps=step,
            total_steps=self.built.total_steps,
            summary=summary,
            stalled=self.watch.final_message(),
            loss_first=losses[0] if losses else None,
            loss_last=losses[-1] if losses else None,
        )
        self.logger.event("verdict", step, trained=verdict.trained, line=verdict.line)
        return verdict

    def _epoch(self, position: dict[str, int], ddp: nn.Module) -> tuple[dict[str, int], str]:
        """The rest of the epoch of ``position``: its steps, then validation and a checkpoint
        at its end. Returns the new position and ``finished``, ``max_steps`` or
        ``interrupted`` (the step boundary to save is then ``self.boundary``)."""
        cfg, epoch = self.cfg, position["epoch"]
        batches = iter(self._loader(epoch, position["batch"]))
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
        self._snapshot(position)
        self.save(position, self.boundary.rng, "epoch")
        return position, "finished"

    def _after_step(self, position: dict[str, int], record: dict[str, Any], seconds: float):
        """Record the completed step: history, loss watch, step boundary, log, progress."""
        cfg, step = self.cfg, position["step"]
        speed = cfg.batch_size * cfg.accumulate * self.env.world_size / max(seconds, 1e-9)
        epoch = position["epoch"]
        record = {"type": "train", "step": step, "epoch": epoch, **record, "images_per_s": speed}
        self.history.append(record)
        self._watch(record)
        if self.env.device.type == "cpu" and self.env.is_main and not self._estimated:
            self._cpu_estimate(position, seconds)
        self._snapshot(position)  # the state of this completed step
        if step % cfg.log_every == 0 or step == self.built.total_steps:
            self.logger.log(record, prefix="train")
        if self.on_step is not None and self.env.is_main:
            self.on_step(record)
        self.eta.step(seconds)
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{record['loss']:.4f}",
            lr=f"{record['lr']:.3g}",
            img_s=f"{speed:.0f}",
            epoch=epoch,
            eta=clock(self._seconds_left(position)),
        )

    def _seconds_left(self, position: dict[str, int]) -> float:
        """The rest of the run, validations included (:mod:`marginface.training.eta`)."""
        cfg = self.cfg
        end = min(self.built.total_steps, cfg.max_steps or self.built.total_steps)
        step = position["step"]
        validations = 0
        if self.validator:
            validations = validations_left(step, end, position["epoch"], cfg.epochs, cfg.val_every)
        images = self.validator.images_per_run() if self.validator else 0
        return self.eta.left(end - step, validations, images, cfg.batch_size * cfg.accumulate)


def resume_after_restart(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``resume`` set when torchrun restarted this job (``--max-restarts``: its
    ``TORCHELASTIC_RESTART_COUNT`` > 0) and the run folder holds a checkpoint: the restarted
    group goes on from the last checkpoint by itself, as a requeued job given ``--resume``
    does. A restart before the first checkpoint starts the run again."""
    restarts = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if cfg.resume or not restarts.isdigit() or int(restarts) == 0:
        return cfg
    if not (Path(cfg.output) / "checkpoint.pt").is_file():
        return cfg
    print(
        f"marginface train: restart {restarts} of this torchrun job: resuming from "
        f"{Path(cfg.output) / 'checkpoint.pt'}",
        flush=True,
    )
    return dataclasses.replace(cfg, resume=True)


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
