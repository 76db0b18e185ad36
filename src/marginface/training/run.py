"""What a run trains, built from its config: :func:`build_run` makes the :class:`Run` record
(the data and its schedule, the model, optimizer, learning-rate schedule and grad scaler, how
the head's scale and the loss's path were set) that the training loop
(:class:`marginface.training.loop.Trainer`) then drives; once a resumed run's checkpoint is
loaded into it and the run folder is checked, :func:`with_monitors` gives it what watches the
run: the loss watch, the validator and the logger; :func:`announce` is what the run says of
itself as it starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from marginface.backbones import create_backbone
from marginface.heads.scale import ScaleChoice, resolve_scale
from marginface.training import finetune
from marginface.training.classifier import build_classifier
from marginface.training.config import TrainConfig
from marginface.training.distributed import DistEnv
from marginface.training.logger import RunLogger
from marginface.training.optim import WarmupDecay, build_optimizer
from marginface.training.sampler import EpochBatchSampler
from marginface.training.validation import Validator
from marginface.training.watch import LossWatch

#: what the run's log says of each path of the fused loss (marginface.heads.choose_path)
LOSS_PATHS = {
    "torch": "the chunked PyTorch path (MARGINFACE_FUSED_PATH=triton takes the Triton kernel on "
    "CUDA)",
    "triton": "the Triton kernel (MARGINFACE_FUSED_PATH=triton)",
}


class TrainModule(nn.Module):
    """Backbone + classifier: ``forward(images (B, 3, S, S), labels (B,)) -> loss ()``.

    One module so that DistributedDataParallel sees every parameter used in a step. The
    backbone runs under autocast (``amp_dtype``); the classifier (``head``:
    :mod:`marginface.training.classifier`, its forward gives the loss) computes its loss in
    float32.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, amp_dtype: torch.dtype | None):
        super().__init__()
        self.backbone, self.head, self.amp_dtype = backbone, head, amp_dtype

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(
            images.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)
        ):
            embeddings = self.backbone(images)
        return self.head(embeddings.float(), labels)


@dataclass(frozen=True)
class Run:
    """A run as :func:`build_run` makes it.

    ``dataset`` (its ``num_classes`` identities, their ``identity_names`` or None);
    ``micro_per_epoch`` micro-batches per epoch (a multiple of ``accumulate``),
    ``steps_per_epoch`` and ``total_steps`` optimizer steps (per process); ``model`` (on the
    device, in training mode), ``optimizer``, ``scheduler``, ``scaler``; ``scale`` (how the
    head's scale was set), ``loss_path`` (the fused loss's path), ``backbone_kwargs`` (the
    backbone's, for ``model.json``) and ``imprinted`` (the classes whose centres were
    imprinted, or None); and, from :func:`with_monitors` (None until then), ``watch`` (the
    loss watch), ``validator`` (the pair sets, or None without validation) and ``logger``."""

    dataset: Dataset
    num_classes: int
    identity_names: list[str] | None
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    model: TrainModule
    optimizer: torch.optim.Optimizer
    scheduler: WarmupDecay
    scaler: torch.amp.GradScaler
    scale: ScaleChoice
    loss_path: str
    backbone_kwargs: dict[str, Any]
    imprinted: int | None
    watch: LossWatch | None = None
    validator: Validator | None = None
    logger: RunLogger | None = None


def build_run(
    cfg: TrainConfig,
    env: DistEnv,
    dataset: Dataset | None = None,
    *,
    backbone: nn.Module | None = None,
    say: Callable[[str], None] = print,
) -> Run:
    """The :class:`Run` of ``cfg`` on ``env``: ``dataset`` (or the one ``cfg.data`` names) and
    its schedule, then the model (``backbone``: a fine-tuning run's start model, else the one
    ``cfg`` names), the optimizer, schedule and grad scaler. ``say`` gets the lines for the
    user (imprinted centres)."""
    dataset = open_data(cfg, dataset)
    num_classes = int(dataset.num_classes)
    names = getattr(dataset, "identity_names", None)
    micro, steps, total = schedule(cfg, env, len(dataset))
    if cfg.amp == "fp16" and env.device.type != "cuda":
        raise ValueError("amp fp16 needs a CUDA device; use --amp bf16 on CPU")
    torch.manual_seed(cfg.seed)
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
    backbone_kwargs, backbone = _backbone(cfg, backbone)
    head_kwargs, scale = resolve_scale(cfg.head, cfg.embedding_size, num_classes, cfg.head_kwargs)
    classifier = build_classifier(cfg, num_classes, env, head_kwargs)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    model = TrainModule(backbone, classifier, amp_dtype).to(env.device).train()
    imprinted = None
    if cfg.init_centres == "imprint" and not cfg.resume:  # a resumed run's from its checkpoint
        imprinted, line = finetune.imprint_classifier(backbone, classifier, dataset, cfg, env)
        say(line)
    params = finetune.param_groups(backbone, classifier, cfg.lr, cfg.backbone_lr)
    optimizer = build_optimizer(params, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
    classifier.attach_optimizer(optimizer)
    scheduler = WarmupDecay(
        optimizer,
        total_steps=total,
        warmup_steps=round(cfg.warmup_epochs * steps),
        kind=cfg.scheduler,
        power=cfg.poly_power,
        min_lr=cfg.min_lr,
    )
    return Run(
        dataset=dataset,
        num_classes=num_classes,
        identity_names=[str(n) for n in names] if names is not None else None,
        micro_per_epoch=micro,
        steps_per_epoch=steps,
        total_steps=total,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16"),
        scale=scale,
        # the fused loss's path, decided by build_classifier (a bad MARGINFACE_FUSED_PATH
        # refused) before the run folder gets its first file
        loss_path=classifier.path,
        backbone_kwargs=backbone_kwargs,
        imprinted=imprinted,
    )


def with_monitors(
    run: Run,
    cfg: TrainConfig,
    env: DistEnv,
    *,
    step: int,
    history: list[dict[str, Any]],
    fail_together: Callable[[Callable[[], Any]], Any],
) -> Run:
    """``run`` with its loss watch (fed the ``history`` of a resumed run's steps), its
    validator (the pair sets of ``cfg.val`` decoded on the main process; ``fail_together``
    runs that there and raises its error on every process) and its logger (in ``cfg.output``,
    continuing at ``step``). Built after a resumed run's checkpoint is loaded and its log cut
    back to ``step``, which the logger then appends to."""
    head = run.model.head.head
    watch = LossWatch(head, run.num_classes, run.total_steps, cfg.loss_watch)
    for record in history:  # a resumed run: the steps before the interruption
        watch.update(record["step"], record["loss"])
    validator = fail_together(
        lambda: Validator(
            cfg.val,
            cfg.image_size,
            cfg.val_max_pairs,
            cfg.val_batch_size,
            env.device,
            max_bad=cfg.max_bad_images,
        ).decode_all()
    )
    logger = RunLogger(Path(cfg.output), env.is_main, cfg.tensorboard, purge_step=step or None)
    return dataclasses.replace(run, watch=watch, validator=validator, logger=logger)


def _backbone(cfg: TrainConfig, start: nn.Module | None) -> tuple[dict[str, Any], nn.Module]:
    """The backbone's kwargs (for ``model.json``) and the backbone: ``start`` (a fine-tuning
    run's, with the model's own kwargs) or the one ``cfg`` names."""
    if start is not None:
        return {"embedding_size": cfg.embedding_size, **cfg.backbone_kwargs}, start
    kwargs = {
        "embedding_size": cfg.embedding_size,
        "input_size": cfg.image_size,
        **cfg.backbone_kwargs,
    }
    options = {k: v for k, v in kwargs.items() if k != "embedding_size"}
    return kwargs, create_backbone(cfg.backbone, embedding_size=cfg.embedding_size, **options)


def open_data(cfg: TrainConfig, dataset: Dataset | None) -> Dataset:
    """``dataset``, or the one ``cfg.data`` names (with the training transforms); at least two
    identities."""
    if dataset is None:
        if not cfg.data:
            raise ValueError("config data: a dataset spec is needed (--data SPEC)")
        from marginface.data import TRAINING_TRANSFORMS, open_dataset

        dataset = open_dataset(cfg.data, image_size=cfg.image_size, transforms=TRAINING_TRANSFORMS)
    if hasattr(dataset, "max_bad"):
        dataset.max_bad = cfg.max_bad_images
    if int(dataset.num_classes) < 2:
        raise ValueError(
            f"dataset {cfg.data!r} has {dataset.num_classes} identity: a classifier needs "
            "at least 2 (with one, every loss is 0 and nothing is learnt)"
        )
    return dataset


def schedule(cfg: TrainConfig, env: DistEnv, n: int) -> tuple[int, int, int]:
    """For ``n`` images: micro-batches per epoch (a multiple of ``accumulate``), optimizer
    steps per epoch and in all (per process)."""
    per_step = cfg.batch_size * env.world_size
    batches = EpochBatchSampler.batches_per_epoch(n, cfg.batch_size, env.world_size)
    micro = batches - batches % cfg.accumulate
    if micro == 0:
        raise ValueError(
            f"dataset {cfg.data!r} has {n} images: too few for one optimizer step of "
            f"{cfg.accumulate} x {per_step} images (accumulate x batch_size x processes)"
        )
    steps = micro // cfg.accumulate
    return micro, steps, steps * cfg.epochs


def announce(
    run: Run,
    cfg: TrainConfig,
    env: DistEnv,
    position: dict[str, int],
    logger: RunLogger,
    say: Callable[[str], None],
    start: finetune.Start | None = None,
    frozen: list[str] | None = None,
    reshard: dict[str, int] | None = None,
) -> None:
    """What ``run`` says as it starts at ``position``, as events of ``logger`` and lines
    ``say`` tells the user: a start or a resume, the ``reshard`` note of a run resumed with
    another number of processes, a fine-tuning ``start`` (its ``frozen`` stages), how the
    head's scale was set and which path the loss takes."""
    step = position["step"]
    logger.event("resume" if cfg.resume else "start", step, epoch=position["epoch"],
                 world_size=env.world_size, device=str(env.device),
                 steps=run.total_steps)  # fmt: skip
    if reshard is not None:
        logger.event("reshard", step, **reshard)
        say(
            f"resuming a run saved by {reshard['saved_world_size']} process(es) with "
            f"{reshard['world_size']}: epoch {reshard['epoch']} goes on after its first "
            f"{reshard['items_done']} images ({reshard['items_skipped']} skipped to reach a "
            "whole global batch)"
        )
    if start is not None:
        logger.event("init", step, **start.record(), centres=cfg.init_centres,
                     imprinted=run.imprinted, backbone_lr=cfg.backbone_lr,
                     frozen=frozen)  # fmt: skip
    choice = run.scale
    logger.event("scale", step, head=cfg.head, s=choice.value, rule=choice.rule)
    say(choice.describe())
    logger.event("loss_path", step, path=run.loss_path)
    say(f"loss: {LOSS_PATHS[run.loss_path]} on {env.device.type}")
