"""Fine-tuning a model (``TrainConfig.init``): the start, imprinted centres, frozen stages,
a slower backbone.

* :func:`start_run` and :func:`start_model`: the backbone to start from (``load_model`` of
  ``init``; on ``--resume`` of the run's own checkpoint, so the model file is not needed again
  and nothing is imprinted twice) and the run's config with the model's architecture,
  embedding and image size (a key set to something else is an error naming both);
* :func:`class_means` and :func:`imprint`: weight imprinting, each class centre set to the
  mean of its identity's L2-normalised embeddings, normalised again (Qi et al., "Low-Shot
  Learning with Imprinted Weights", CVPR 2018), so the first step already classifies;
* :func:`backbone_stages` and :func:`freeze`: the first N stages of a backbone keep their
  weights and BatchNorm statistics;
* :func:`param_groups`: the backbone at ``backbone_lr`` times the head's learning rate.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from marginface.backbones.checkpoint import load_model
from marginface.files import file_sha256
from marginface.heads import MarginHead
from marginface.training.config import TrainConfig
from marginface.training.distributed import DistEnv, all_reduce_sum

#: keys of the start model's ``model.json`` that a fine-tuned model does not inherit: what the
#: trainer writes itself, and what was true of the start model only (its threshold and
#: calibration, its training identities and head, where its weights came from: that goes
#: into the ``init`` record). Everything else (the input contract: colour order, mean and
#: std, flip test, ...) carries over.
NOT_INHERITED = frozenset(
    {
        "backbone",
        "backbone_kwargs",
        "image_size",
        "identity_names",
        "threshold",
        "head",
        "head_kwargs",
        "source",
        "init",
        "training",
        "calibration",
    }
)


@dataclass
class Start:
    """What a fine-tuning run started from: ``model`` (the ``init`` path as given),
    ``file`` (the weights file read), ``sha256`` (of that file), ``source`` (the model's own
    ``source`` record, e.g. of an imported published model, or None), ``info`` (its
    ``model.json`` info). ``resumed``: read from the run's own checkpoint (--resume), whose
    ``init`` record gives ``sha256`` and ``source``."""

    model: str
    file: str
    sha256: str | None
    source: Any
    info: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False

    def record(self) -> dict[str, Any]:
        """The ``init`` record of the fine-tuned model's ``model.json``."""
        return {"model": self.model, "sha256": self.sha256, "source": self.source}

    def inherited(self) -> dict[str, Any]:
        """The start model's info that the fine-tuned model keeps (its input contract)."""
        return {k: v for k, v in self.info.items() if k not in NOT_INHERITED}

    def describe(self) -> str:
        where = f"{self.model} (sha256 {self.sha256[:16]}...)" if self.sha256 else self.model
        line = f"fine-tuning from {where}: {self.info.get('backbone')}"
        if self.source is not None:
            line += f"; its source: {_describe_source(self.source)}"
        return line


def _describe_source(source: Any) -> str:
    if isinstance(source, dict):
        return ", ".join(f"{k} {v}" for k, v in source.items() if v is not None)
    return str(source)


def _weights_file(path: Path) -> Path:
    """The file ``load_model`` reads for ``path`` (a folder: its model.pt or checkpoint.pt)."""
    if path.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (path / name).is_file():
                return path / name
    return path


def start_model(
    cfg: TrainConfig, checkpoint: Path | None = None
) -> tuple[TrainConfig, nn.Module, Start]:
    """The backbone a fine-tuning run starts from, and ``cfg`` with the model's keys.

    ``checkpoint``: on ``--resume``, the run's own ``checkpoint.pt``: the architecture is
    rebuilt from it (its weights replace these anyway) and the start record is its own.
    Raises FileNotFoundError / ValueError naming ``--init`` for a model that cannot
    be read, and for ``backbone``, ``embedding_size``, ``image_size`` or ``backbone_kwargs``
    set to something other than the model's.
    """
    path = Path(cfg.init) if checkpoint is None else checkpoint
    try:
        backbone, info = load_model(path, map_location="cpu")
    except (OSError, ValueError) as exc:
        raise type(exc)(f"--init: {exc}") from None
    kwargs = dict(info["backbone_kwargs"])
    found = {
        "backbone": info["backbone"],
        "embedding_size": kwargs.pop("embedding_size"),
        "image_size": info["image_size"],
    }
    for key, value in found.items():
        given = getattr(cfg, key)
        if given is not None and given != value:
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"{flag} {given} conflicts with the --init model {cfg.init}, whose {key} is "
                f"{value}: the backbone comes from the model (leave {flag} out)"
            )
    if cfg.backbone_kwargs and cfg.backbone_kwargs != kwargs:
        raise ValueError(
            f"--backbone-kwargs {cfg.backbone_kwargs} conflicts with the --init model "
            f"{cfg.init}, built with {kwargs}: the backbone comes from the model"
        )
    cfg = dataclasses.replace(cfg, **found, backbone_kwargs=kwargs)
    if checkpoint is not None:
        blob_info = info.get("init") or {}
        start = Start(
            str(cfg.init),
            str(checkpoint),
            blob_info.get("sha256"),
            blob_info.get("source"),
            info,
            resumed=True,
        )
    else:
        file = _weights_file(path)
        digest = file_sha256(file) if file.is_file() else None
        start = Start(str(cfg.init), str(file), digest, info.get("source"), info)
    return cfg, backbone, start


def start_run(
    cfg: TrainConfig, output: Path, say: Callable[[str], None]
) -> tuple[TrainConfig, nn.Module, Start, list[str]]:
    """A fine-tuning run's start: ``cfg`` with the model's keys, the backbone of ``init`` (on
    --resume rebuilt from ``output``'s checkpoint, :func:`start_model`), the ``Start`` record
    and the stages :func:`freeze` froze; the :func:`plan` is told (``say``) before anything
    runs."""
    saved = output / "checkpoint.pt"
    checkpoint = saved if cfg.resume and saved.is_file() else None
    cfg, backbone, start = start_model(cfg, checkpoint)
    frozen = freeze(backbone, cfg.freeze)
    for line in plan(cfg, start, backbone, frozen):
        say(line)
    return cfg, backbone, start, frozen


def plan(cfg: TrainConfig, start: Start, backbone: nn.Module, frozen: list[str]) -> list[str]:
    """The lines a fine-tuning run starts with: what it starts from, and how it tunes."""
    if start.resumed:
        return [start.describe(), "resuming: weights and class centres from the checkpoint"]
    stages = len(backbone_stages(backbone)) if frozen else 0
    held = f"{', '.join(frozen)} ({len(frozen)} of {stages} stages)" if frozen else "nothing"
    centres = "imprinted" if cfg.init_centres == "imprint" else "random"
    return [
        start.describe(),
        f"class centres: {centres}; {cfg.optimizer} at lr {cfg.lr:g}, the backbone at "
        f"{cfg.backbone_lr:g} x that; frozen: {held}; {cfg.epochs} epochs, warm-up "
        f"{cfg.warmup_epochs:g}",
    ]


# ------------------------------------------------------------------------- frozen stages
def backbone_stages(backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The backbone's stages, input first, as (name, modules): what ``freeze N`` takes the
    first N of. iResNet: the stem (conv1, bn1, prelu), layer1..layer4; MobileFaceNet: the
    stem, then its five groups of bottlenecks (one per row of its STAGES table); small_cnn:
    its four stride-2 stages; arcface_torch's MobileFaceNet (``mbf``: ``layers`` of 8 and
    ``conv_sep``): the stem and its three stride-2 stages. The embedding layers after them
    (fc / linear / GDC and the last BatchNorm) are never frozen. Another backbone may define
    ``stages()`` returning the same list; otherwise (e.g. a converted ONNX graph)
    ValueError."""
    from marginface.backbones.iresnet import IResNet
    from marginface.backbones.mobilefacenet import STAGES, MobileFaceNet
    from marginface.backbones.small_cnn import SmallCNN

    if isinstance(backbone, IResNet):
        stem = [backbone.conv1, backbone.bn1, backbone.prelu]
        return [("stem", stem)] + [
            (f"layer{i}", [getattr(backbone, f"layer{i}")]) for i in (1, 2, 3, 4)
        ]
    if isinstance(backbone, MobileFaceNet):
        out, start = [("stem", [backbone.stem])], 0
        for n in (row[2] for row in STAGES):
            out.append((f"blocks[{start}:{start + n}]", list(backbone.blocks[start : start + n])))
            start += n
        return out
    if isinstance(backbone, SmallCNN):
        per = len(backbone.body) // 4
        return [(f"stage{i + 1}", list(backbone.body[i * per : (i + 1) * per])) for i in range(4)]
    stages = getattr(backbone, "stages", None)
    if callable(stages):
        return list(stages())
    layers = getattr(backbone, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers) == 8 and hasattr(backbone, "conv_sep"):
        # arcface_torch's MobileFaceNet layout (``mbf``): stem conv + its block, then three
        # stride-2 depthwise blocks, each followed by its residual blocks
        names = ("stem", "stage1", "stage2", "stage3")
        return [(name, list(layers[2 * i : 2 * i + 2])) for i, name in enumerate(names)]
    raise ValueError(
        f"config freeze: the backbone {getattr(backbone, 'name', type(backbone).__name__)} has "
        "no stages defined to freeze; fine-tune it whole (freeze 0)"
    )


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of a frozen module: it stays in eval mode (BatchNorm keeps its statistics)."""
    return nn.Module.train(self, False)


def freeze(backbone: nn.Module, n: int) -> list[str]:
    """Freeze the first ``n`` stages of :func:`backbone_stages`: their parameters need no
    gradient (so no optimizer holds them) and their modules stay in eval mode whatever
    ``train()`` is called on. Returns the frozen stages' names; ValueError naming ``freeze``
    when the backbone has fewer stages."""
    if n == 0:
        return []
    stages = backbone_stages(backbone)
    if n > len(stages):
        names = ", ".join(name for name, _ in stages)
        raise ValueError(
            f"config freeze: must be at most the {len(stages)} stages of the backbone "
            f"({names}), got {n}"
        )
    for _, modules in stages[:n]:
        for top in modules:
            for module in top.modules():
                module.train = types.MethodType(_stay_in_eval, module)
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
            top.eval()
    return [name for name, _ in stages[:n]]


def param_groups(
    backbone: nn.Module, head: nn.Module, lr: float, backbone_lr: float
) -> list[nn.Parameter] | list[dict[str, Any]]:
    """The optimizer's parameters: one group at ``lr`` when ``backbone_lr`` is 1; else the
    head's at ``lr`` first (the group whose rate the log shows and the schedule's ``min_lr``
    refers to), then the backbone's at ``backbone_lr * lr``."""
    if backbone_lr == 1.0:
        return [*backbone.parameters(), *head.parameters()]
    return [
        {"params": list(head.parameters()), "lr": lr},
        {"params": list(backbone.parameters()), "lr": lr * backbone_lr},
    ]


# ---------------------------------------------------------------------------- imprinting
def check_imprintable(head: MarginHead) -> None:
    """ValueError naming ``init_centres`` for a head whose centres imprinting cannot set:
    one whose logits are not cosines (the plain softmax head: its centres' norms matter)."""
    if not head.normalize:
        raise ValueError(
            f"config init_centres: imprint needs a cosine head; the {head.head_name} head's "
            "logits depend on its centres' norms, which imprinting does not set (use "
            "init_centres random, --init-centres random)"
        )
    rows = head.num_classes * head.subcenters
    if tuple(head.weight.shape) != (rows, head.embedding_size):
        raise ValueError(
            f"config init_centres: imprint needs a (classes x sub-centres, D) centre matrix; "
            f"the {head.head_name} head's weight is {tuple(head.weight.shape)}"
        )


def imprint_classifier(
    backbone: nn.Module, classifier: nn.Module, dataset: Dataset, cfg: TrainConfig, env: DistEnv
) -> tuple[int, str]:
    """Imprint the centres of the run's classifier (its margin head, or with Partial FC this
    process's shard) from the training set: (classes imprinted, the line that says so)."""
    head = classifier.head
    check_imprintable(head)
    num_classes = int(dataset.num_classes)
    means, counts = class_means(
        backbone,
        dataset,
        num_classes,
        cfg.embedding_size,
        env,
        batch_size=cfg.val_batch_size,
        num_workers=cfg.num_workers,
        progress=cfg.progress,
    )
    imprint(head, means, counts, getattr(classifier, "class_start", 0))
    done = int((counts > 0).sum())
    line = f"imprinted {done} class centres from {int(counts.sum())} training images"
    if done < num_classes:
        line += f"; {num_classes - done} identities without images keep random centres"
    return done, line


@torch.no_grad()
def class_means(
    backbone: nn.Module,
    dataset: Dataset,
    num_classes: int,
    embedding_size: int,
    env: DistEnv,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Each class's mean L2-normalised embedding, normalised again: ``(means (C, D) float64
    on the CPU, counts (C,))``, a zero row for a class without images.

    The backbone embeds the whole training set once in eval mode, with the dataset's
    transforms off (a dataset with a ``transforms`` attribute), each process a 1 / W share of
    it; the per-class sums are added over the processes. The global random generators are
    left as they were."""
    from tqdm import tqdm

    from marginface.data.transforms import NO_TRANSFORMS
    from marginface.training import checkpoint as ckpt

    indices = list(range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        num_workers=num_workers,
        generator=torch.Generator(),  # the loader never draws from the global RNG
    )
    transforms = getattr(dataset, "transforms", None)
    was_training, rng = backbone.training, ckpt.capture_rng()
    sums = torch.zeros(num_classes, embedding_size, dtype=torch.float64, device=env.device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=env.device)
    try:
        if transforms is not None:
            dataset.transforms = NO_TRANSFORMS
        backbone.eval()
        bar = tqdm(
            loader,
            desc="imprint",
            unit="batch",
            dynamic_ncols=True,
            disable=not (progress and env.is_main),
        )
        for images, labels in bar:
            x = backbone(torch.as_tensor(images).to(env.device)).double()
            x = F.normalize(x, dim=1)
            labels = torch.as_tensor(labels).to(env.device).long()
            sums.index_add_(0, labels, x)
            counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
    finally:
        if transforms is not None:
            dataset.transforms = transforms
        backbone.train(was_training)
        ckpt.restore_rng(rng)
    sums, counts = all_reduce_sum(sums, env), all_reduce_sum(counts, env)
    return F.normalize(sums, dim=1).cpu(), counts.cpu()


@torch.no_grad()
def imprint(head: MarginHead, means: Tensor, counts: Tensor, class_start: int = 0) -> int:
    """Set the centres of ``head`` (classes ``class_start`` .. ``class_start + C_head`` of
    ``means``: a Partial FC shard holds a range of them) to ``means``; every sub-centre of a
    class gets its mean. Classes without images keep their random centre. Returns how many
    centres were set."""
    check_imprintable(head)
    k, n = head.subcenters, head.num_classes
    rows = means[class_start : class_start + n]
    have = counts[class_start : class_start + n] > 0
    weight = head.weight
    new = rows.repeat_interleave(k, dim=0).to(weight.device, weight.dtype)
    keep = have.repeat_interleave(k).to(weight.device)
    weight.copy_(torch.where(keep[:, None], new, weight))
    return int(have.sum())
