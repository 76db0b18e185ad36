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
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from marginface.backbones import create_backbone
from marginface.backbones.checkpoint import save_model
from marginface.files import FolderLock, atomic_write_text, clean_stale_temporaries
from marginface.heads import MarginHead, create_head
from marginface.training import checkpoint as ckpt
from marginface.training.config import RESUME_FREE_KEYS, TrainConfig, config_to_yaml
from marginface.training.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup_distributed,
    setup_distributed,
    wrap_data_parallel,
)
from marginface.training.logger import RunLogger, truncate_log
from marginface.training.optim import WarmupDecay, build_optimizer
from marginface.training.preflight import (
    check_output_dir,
    check_output_inside_data,
    estimate_output_bytes,
    set_aside_old_log,
)
from marginface.training.sampler import EpochBatchSampler, SeededItems
from marginface.training.validation import Validator, flat_metrics, score_of
from marginface.training.watch import LossWatch, resolve_scale

_log = logging.getLogger("marginface.train")


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

    ``history``: one dict per optimizer step (step, epoch, loss, lr, images_per_s, ...), of the
    whole run (a resumed run includes the steps logged before the interruption).
    ``stopped``: ``finished``, ``max_steps`` or ``interrupted``. ``best``: the best validation
    (step, score, threshold) or None. ``validation``: the last validation metrics per set.
    ``scale``: how the head's scale was set (:class:`marginface.training.watch.ScaleChoice`).
    ``warnings``: what the loss watch reported. ``summary``: at the end (None when off or
    interrupted) ``nearer_own_share``, the share of ``images`` training images (up to
    ``summary_images``) nearer their own class centre than any other.
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


class TrainModule(nn.Module):
    """Backbone + head: ``forward(images (B, 3, S, S), labels (B,)) -> loss ()``.

    One module so that DistributedDataParallel sees every parameter used in a step. The
    backbone runs under autocast (``amp_dtype``); the head computes its loss in float32.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, amp_dtype: torch.dtype | None):
        super().__init__()
        self.backbone, self.head, self.amp_dtype = backbone, head, amp_dtype

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(
            images.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)
        ):
            embeddings = self.backbone(images)
        if isinstance(self.head, MarginHead):
            return self.head.loss(embeddings.float(), labels)
        return self.head(embeddings.float(), labels)  # PartialFC: the loss is its forward


class _StopFlag:
    """SIGINT/SIGTERM -> stop at the next step boundary (checkpoint saved); a second SIGINT
    raises KeyboardInterrupt at once (nothing more is saved)."""

    def __init__(self) -> None:
        self.requested = False
        self.hard = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            self.hard = True
            raise KeyboardInterrupt("second interrupt: stopping without saving")
        self.requested = True
        print(
            "\nmarginface train: stop requested; saving a checkpoint after this step "
            "(press Ctrl-C again to abort without saving)",
            flush=True,
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _ignore_sigint(worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops at a step boundary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _merge_resume_config(new: TrainConfig, saved: dict[str, Any], source: Path) -> TrainConfig:
    """The config of a resumed run: ``new``, which must agree with the checkpoint's config on
    every key that changes the result (all but :data:`RESUME_FREE_KEYS`)."""
    old = TrainConfig.from_dict(saved, f"{source} (config)")
    clashes = [
        f"{key}: checkpoint {getattr(old, key)!r}, now {getattr(new, key)!r}"
        for key in old.to_dict()
        if key not in RESUME_FREE_KEYS and getattr(old, key) != getattr(new, key)
    ]
    if clashes:
        raise ValueError(
            f"--resume from {source}: the configuration differs from the checkpoint's in keys "
            f"that would change the run: {'; '.join(clashes)}"
        )
    return new


class Trainer:
    """One training run; :func:`train` is the way to use it."""

    def __init__(
        self,
        config: TrainConfig,
        env: DistEnv,
        dataset: Dataset | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.cfg, self.env = config, env
        self.output = Path(config.output)
        self.dataset = dataset
        self.on_step = on_step
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.last_validation: dict[str, dict[str, Any]] = {}
        self.threshold: float | None = None
        self._last_val_step = -1
        self.warnings: list[str] = []
        self.bar = None

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

    def _open_data(self) -> None:
        cfg = self.cfg
        if self.dataset is None:
            if not cfg.data:
                raise ValueError("config data: a dataset spec is needed (--data SPEC)")
            from marginface.data import open_dataset

            self.dataset = open_dataset(cfg.data, image_size=cfg.image_size, augment=True)
        if hasattr(self.dataset, "max_bad"):
            self.dataset.max_bad = cfg.max_bad_images
        self.num_classes = int(self.dataset.num_classes)
        if self.num_classes < 2:
            raise ValueError(
                f"dataset {cfg.data!r} has {self.num_classes} identity: a classifier needs at "
                "least 2 (with one, every loss is 0 and nothing is learnt)"
            )
        names = getattr(self.dataset, "identity_names", None)
        self.identity_names = [str(n) for n in names] if names is not None else None
        n = len(self.dataset)
        per_step = cfg.batch_size * self.env.world_size
        batches = EpochBatchSampler.batches_per_epoch(n, cfg.batch_size, self.env.world_size)
        self.micro_per_epoch = batches - batches % cfg.accumulate
        if self.micro_per_epoch == 0:
            raise ValueError(
                f"dataset {cfg.data!r} has {n} images: too few for one optimizer step of "
                f"{cfg.accumulate} x {per_step} images (accumulate x batch_size x processes)"
            )
        self.steps_per_epoch = self.micro_per_epoch // cfg.accumulate
        self.total_steps = self.steps_per_epoch * cfg.epochs

    def _build(self) -> None:
        cfg, env = self.cfg, self.env
        if cfg.amp == "fp16" and env.device.type != "cuda":
            raise ValueError("amp fp16 needs a CUDA device; use --amp bf16 on CPU")
        torch.manual_seed(cfg.seed)
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
        self.backbone_kwargs = {
            "embedding_size": cfg.embedding_size,
            "input_size": cfg.image_size,
            **cfg.backbone_kwargs,
        }
        kwargs = {k: v for k, v in self.backbone_kwargs.items() if k != "embedding_size"}
        backbone = create_backbone(cfg.backbone, embedding_size=cfg.embedding_size, **kwargs)
        head_kwargs, self.scale_choice = resolve_scale(
            cfg.head, cfg.embedding_size, self.num_classes, cfg.head_kwargs
        )
        if self.sharded:
            from marginface.parallel import PartialFC

            # rank r holds only its shard; DDP averages the backbone's gradients over the W
            # ranks, so the local embeddings' gradient is scaled by W (see docs/parallel.md)
            head: nn.Module = PartialFC(
                cfg.head,
                cfg.embedding_size,
                self.num_classes,
                sample_rate=cfg.sample_rate,
                process_group=None if env.distributed else "local",
                seed=cfg.seed,
                embedding_grad_scale=float(env.world_size),
                **head_kwargs,
            )
        else:
            head = create_head(cfg.head, cfg.embedding_size, self.num_classes, **head_kwargs)
        amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        self.model = TrainModule(backbone, head, amp_dtype).to(env.device).train()
        self.optimizer = build_optimizer(
            self.model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay
        )
        if self.sharded:
            self.model.head.attach_optimizer(self.optimizer)
        self.scheduler = WarmupDecay(
            self.optimizer,
            total_steps=self.total_steps,
            warmup_steps=round(cfg.warmup_epochs * self.steps_per_epoch),
            kind=cfg.scheduler,
            power=cfg.poly_power,
            min_lr=cfg.min_lr,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")

    def model_info(self) -> dict[str, Any]:
        """The ``model.json`` info of the backbone being trained."""
        return {
            "backbone": self.cfg.backbone,
            "backbone_kwargs": dict(self.backbone_kwargs),
            "image_size": self.cfg.image_size,
            "identity_names": self.identity_names,
            "threshold": self.threshold,
            "head": self.cfg.head,
            "head_kwargs": self.margin_head.hparams(),
        }

    @property
    def sharded(self) -> bool:
        """The class centres are sharded (PartialFC) rather than a replicated head."""
        return self.cfg.partial_fc or self.cfg.sample_rate < 1

    @property
    def margin_head(self) -> MarginHead:
        """The margin head (for PartialFC: this rank's shard of it)."""
        head = self.model.head
        return head if isinstance(head, MarginHead) else head.head

    def head_state(self) -> dict[str, Any] | None:
        """The head's state to save; with PartialFC the full (all ranks') state on rank 0.
        Collective when sharded: every rank calls it."""
        if self.sharded:
            return self.model.head.full_state_dict()
        return self.model.head.state_dict()

    # --------------------------------------------------------------------- checkpoints
    def _payload(
        self, position: dict[str, int], rng: dict[str, Any], head_state: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "backbone": self.model.backbone.state_dict(),
            "head": head_state,
            "sharded_head": self.sharded,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "position": dict(position, seed=self.cfg.seed),
            "best": self.best,
            "config": self.cfg.to_dict(),
            "model_info": self.model_info(),
            "world_size": self.env.world_size,
        }

    def save(self, position: dict[str, int], rng: dict[str, Any], reason: str) -> None:
        """checkpoint.pt + model.pt/model.json (main process only; write, then rename).

        Weights that are not finite are never written: TrainingDiverged instead."""
        head_state = self.head_state()  # collective with PartialFC
        if not self.env.is_main:
            return
        tensors = [*self.model.backbone.state_dict().values()]
        tensors += [v for v in (head_state or {}).values() if isinstance(v, Tensor)]
        if not _all_finite(tensors):
            raise self._diverged("non-finite weights", position["step"] - 1, position["epoch"])
        payload = self._payload(position, rng, head_state)
        ckpt.save_checkpoint(self.output / "checkpoint.pt", payload)
        save_model(self.output, self.model.backbone, self.model_info())
        self.logger.event("checkpoint", position["step"], reason=reason, epoch=position["epoch"])

    def _resume(self) -> dict[str, int]:
        path = self.output / "checkpoint.pt"
        blob = ckpt.load_checkpoint(path, map_location="cpu")  # RNG states must stay on CPU
        self.cfg = _merge_resume_config(self.cfg, blob["config"], path)
        if blob.get("world_size", 1) != self.env.world_size:
            raise ValueError(
                f"--resume from {path}: saved with {blob.get('world_size')} processes, now "
                f"{self.env.world_size}; the data order would differ"
            )
        self.model.backbone.load_state_dict(blob["backbone"])
        if bool(blob.get("sharded_head", False)) != self.sharded:
            raise ValueError(
                f"--resume from {path}: saved {'with' if blob.get('sharded_head') else 'without'}"
                f" the sharded classifier (partial_fc / sample_rate); the run must keep it"
            )
        if self.sharded:
            self.model.head.load_full_state_dict(blob["head"])
        else:
            self.model.head.load_state_dict(blob["head"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self.scaler.load_state_dict(blob["scaler"])
        self.best = blob.get("best")
        info = blob.get("model_info") or {}
        self.threshold = info.get("threshold")
        self._resume_rng = blob["rng"]
        position = {k: int(blob["position"][k]) for k in ("epoch", "batch", "step")}
        if self.env.is_main:
            kept = truncate_log(self.output / "log.jsonl", position["step"])
            self.history = [r for r in kept if r.get("type") == "train"]
        return position

    # ------------------------------------------------------------------------ validation
    def validate(self, step: int, epoch: int) -> None:
        """Evaluate on the pair sets (main process), log, keep OUTPUT/best/ when it improves."""
        if self.env.is_main and self.validator and step != self._last_val_step:
            self._last_val_step = step
            results = self.validator.run(self.model.backbone)
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
                save_model(self.output / "best", self.model.backbone, self.model_info())
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
            len(self.dataset),
            cfg.batch_size,
            cfg.seed,
            epoch,
            start_batch,
            env.rank,
            env.world_size,
        )
        return DataLoader(
            SeededItems(self.dataset),
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=env.device.type == "cuda",
            worker_init_fn=_ignore_sigint if cfg.num_workers else None,
            generator=torch.Generator(),  # the loader never draws from the global RNG
        )

    def _snapshot(self, position: dict[str, int]) -> None:
        """Remember the state at this step boundary (RNG and buffers: a forward pass changes
        BatchNorm statistics and head state, so an interrupt mid-step restores them)."""
        self.boundary = {
            "position": dict(position),
            "rng": ckpt.capture_rng(),
            "buffers": {k: v.detach().clone() for k, v in self.model.named_buffers()},
        }

    def _restore_boundary(self) -> None:
        self.model.load_state_dict(self.boundary["buffers"], strict=False)
        ckpt.restore_rng(self.boundary["rng"])
        self.optimizer.zero_grad(set_to_none=True)

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
        warm = self.cfg.margin_warmup_epochs * self.steps_per_epoch
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
        (main process; the centres of every rank when sharded: collective)."""
        n = min(self.cfg.summary_images, len(self.dataset))
        if n == 0:
            return None
        state = self.head_state()  # collective with PartialFC
        if not self.env.is_main or state is None:
            return None
        from marginface.evaluation.angles import (
            centre_angles,
            class_centres,
            embed_raw,
            nearer_own_share,
        )

        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        idx = torch.randperm(len(self.dataset), generator=rng)[:n].sort().values.tolist()
        features, labels = [], []
        devices_rng = ckpt.capture_rng()  # augmenting datasets draw from the global RNG
        try:
            for start in range(0, n, 256):  # a batch of images in memory at a time
                items = [self.dataset[i] for i in idx[start : start + 256]]
                images = torch.stack([torch.as_tensor(im) for im, _ in items])
                features.append(embed_raw(self.model.backbone, images, self.env.device))
                labels += [int(y) for _, y in items]
        finally:
            ckpt.restore_rng(devices_rng)
        weight = state["head.weight" if self.sharded else "weight"]
        centres = class_centres(self.margin_head, weight)
        share = nearer_own_share(*centre_angles(torch.cat(features), torch.tensor(labels), centres))
        summary = {"nearer_own_share": share, "images": n}
        self.logger.event("summary", self.history[-1]["step"] if self.history else 0, **summary)
        return summary

    def _save_after_error(self, exc: Exception) -> None:
        """Save the last completed step before ``exc`` is reported, so no work is lost.

        Not with the sharded classifier over several processes: saving it is collective, and
        the other processes may be stuck elsewhere."""
        position = self.boundary["position"]
        if (self.sharded and self.env.distributed) or position["step"] == 0:
            return
        self._restore_boundary()
        try:
            self.save(position, self.boundary["rng"], "error")
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
        for i in range(k):
            images, labels = next(batches)
            images = images.to(env.device, non_blocking=True)
            labels = labels.to(env.device, non_blocking=True)
            sync = i == k - 1 or not env.distributed
            with contextlib.nullcontext() if sync else ddp.no_sync():
                loss = ddp(images, labels)
                self.scaler.scale(loss / k).backward()
            total += loss.detach().double().cpu()
        stats = torch.stack([total / k, torch.tensor(float(self.stop.requested))])
        stats = all_reduce_sum(stats.double(), env)
        mean_loss = float(stats[0]) / env.world_size
        if not math.isfinite(mean_loss):
            raise self._diverged(mean_loss, position["step"], position["epoch"])
        lr = self.optimizer.param_groups[0]["lr"]
        record: dict[str, Any] = {}
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            record["grad_norm"] = float(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        finite = torch.tensor([float(_all_finite(list(self.model.parameters())))])
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
        cfg, env = self.cfg, self.env
        self._fail_together(self._fresh_output)
        self._open_data()
        self._build()
        position = {"epoch": 0, "batch": 0, "step": 0}
        self._resume_rng = None
        if cfg.resume:
            position = self._resume()
            cfg = self.cfg
        needed = estimate_output_bytes(self.model.backbone, self.model.head, cfg.optimizer)
        self._fail_together(lambda: check_output_dir(self.output, needed + cfg.min_free_bytes))
        if env.is_main:
            scale_note = f"# {self.scale_choice.describe()}\n"
            atomic_write_text(self.output / "config.yaml", config_to_yaml(cfg) + scale_note)
        self.validator = self._fail_together(
            lambda: Validator(
                cfg.val,
                cfg.image_size,
                cfg.val_max_pairs,
                cfg.val_batch_size,
                env.device,
                max_bad=cfg.max_bad_images,
            ).decode_all()
        )
        self.logger = RunLogger(
            self.output, env.is_main, cfg.tensorboard, purge_step=position["step"] or None
        )
        try:
            return self._loop(position)
        finally:
            if self.bar is not None:
                self.bar.close()
            self.logger.close()

    def _loop(self, position: dict[str, int]) -> TrainResult:
        from tqdm import tqdm

        cfg, env = self.cfg, self.env
        # PartialFC synchronises itself: DDP must neither broadcast nor all-reduce its tensors
        ignore = [f"head.{n}" for n, _ in self.model.head.named_parameters()] + [
            f"head.{n}" for n, _ in self.model.head.named_buffers()
        ]
        ddp = wrap_data_parallel(self.model, env, ignore if self.sharded else ())
        self.logger.event(
            "resume" if cfg.resume else "start",
            position["step"],
            epoch=position["epoch"],
            world_size=env.world_size,
            device=str(env.device),
            steps=self.total_steps,
        )
        choice = self.scale_choice
        self.logger.event(
            "scale", position["step"], head=cfg.head, s=choice.value, rule=choice.rule
        )
        self._say(choice.describe())
        self.watch = LossWatch(self.margin_head, self.num_classes, self.total_steps, cfg.loss_watch)
        for record in self.history:  # a resumed run: the steps before the interruption
            self.watch.update(record["step"], record["loss"])
        if self._resume_rng is not None:
            ckpt.restore_rng(self._resume_rng)
        self.bar = tqdm(
            total=self.total_steps,
            initial=position["step"],
            unit="step",
            dynamic_ncols=True,
            disable=not (cfg.progress and env.is_main),
            desc="train",
        )
        images_per_step = cfg.batch_size * cfg.accumulate * env.world_size
        stopped = "finished"
        t_start = time.perf_counter()
        self._snapshot(position)
        with _StopFlag() as self.stop:
            try:
                while position["epoch"] < cfg.epochs and stopped == "finished":
                    epoch = position["epoch"]
                    batches = iter(self._loader(epoch, position["batch"]))
                    while position["batch"] < self.micro_per_epoch:
                        if cfg.max_steps is not None and position["step"] >= cfg.max_steps:
                            stopped = "max_steps"
                            break
                        t0 = time.perf_counter()
                        record = self._step(batches, ddp, position)
                        position["batch"] += cfg.accumulate
                        position["step"] += 1
                        step = position["step"]
                        speed = images_per_step / max(time.perf_counter() - t0, 1e-9)
                        record = {
                            "type": "train",
                            "step": step,
                            "epoch": epoch,
                            **record,
                            "images_per_s": speed,
                        }
                        self.history.append(record)
                        self._watch(record)
                        self._snapshot(position)  # the state of this completed step
                        if step % cfg.log_every == 0 or step == self.total_steps:
                            self.logger.log(record, prefix="train")
                        if self.on_step is not None and env.is_main:
                            self.on_step(record)
                        self.bar.update(1)
                        self.bar.set_postfix(
                            loss=f"{record['loss']:.4f}",
                            lr=f"{record['lr']:.3g}",
                            img_s=f"{speed:.0f}",
                            epoch=epoch,
                        )
                        if cfg.val_every and step % cfg.val_every == 0:
                            self.validate(step, epoch)
                        if self.stop.requested:
                            stopped = "interrupted"
                            break
                        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                            self.save(position, self.boundary["rng"], "every")
                    if stopped != "finished":
                        break
                    position = {"epoch": epoch + 1, "batch": 0, "step": position["step"]}
                    if cfg.val and (not cfg.val_every or position["epoch"] == cfg.epochs):
                        self.validate(position["step"], epoch)
                    self._snapshot(position)
                    self.save(position, self.boundary["rng"], "epoch")
            except KeyboardInterrupt:
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
                position = self.boundary["position"]
                self.save(position, self.boundary["rng"], stopped)
        barrier(env)
        elapsed = time.perf_counter() - t_start
        self.logger.event("stop", position["step"], reason=stopped, train_time_s=elapsed)
        summary = self._summary() if stopped != "interrupted" else None
        return TrainResult(
            output_dir=self.output,
            history=self.history,
            train_time_s=elapsed,
            backbone=self.model.backbone,
            head=self.model.head,
            stopped=stopped,
            steps=position["step"],
            best=self.best,
            validation=self.last_validation,
            scale=self.scale_choice,
            warnings=list(self.warnings),
            summary=summary,
        )


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
    env = setup_distributed(cfg.device)
    try:
        return Trainer(cfg, env, dataset, on_step).run()
    finally:
        cleanup_distributed(env)
