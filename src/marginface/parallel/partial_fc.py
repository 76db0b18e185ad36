"""PartialFC: a margin head whose class centres are sharded over the ranks of a process group.

Every rank holds the centres of a contiguous range of classes (its shard, in ``self.head``,
a head of ``marginface.heads`` built for that many classes).  For the global batch (all
ranks' embeddings, all-gathered) it finds the target score of every row (on the rank that
owns the row's class, shared by an all-reduce) and hands the head a
:class:`marginface.heads.engine.Shard`: the batch, its own centres, and the reductions over the
ranks (all-reduced sums and log-sum-exps).  The head computes its loss from that
(:meth:`marginface.heads.MarginHead.sharded_loss`): PartialFC knows no head.

Gradients: the backward of the all-gather sums each rank's contribution to each rank's own
embeddings; each rank's centres get the exact gradient of the global mean loss.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from marginface.checks import check_positive_int
from marginface.heads._math import no_autocast
from marginface.heads.base import MarginHead
from marginface.heads.engine import Shard, build_shard, target_scores
from marginface.heads.registry import check_hparams, head_class
from marginface.parallel.comm import (
    LOCAL,
    GroupInfo,
    all_gather_plain,
    all_gather_with_grad,
    all_reduce_,
    all_reduce_sum_partial,
    global_logsumexp,
    resolve_group,
)
from marginface.parallel.sampling import (
    ActiveRows,
    class_rows,
    gather_row_state,
    num_samples,
    sample_classes,
    scatter_row_state,
)
from marginface.parallel.sharding import seeded_xavier_rows, shard_range
from marginface.parallel.state import STATE_FORMAT, gather_full_state, shard_full_state


def per_class_keys(
    head_cls: type[MarginHead], embedding_size: int, hparams: dict
) -> dict[str, int]:
    """State-dict keys of a head that hold rows per class, with their rows per class.

    Found by building the head for 3 and 4 classes (a default may need a few classes): the
    tensors whose first dimension changes are per class (``weight``: K rows per class, a
    per-class ``bias``: 1); the others (state such as a step counter, a bias shared by all
    classes) are replicated on every rank.
    """
    one = head_cls(embedding_size, 3, **hparams).state_dict()
    two = head_cls(embedding_size, 4, **hparams).state_dict()
    return {
        k: int(two[k].shape[0] - one[k].shape[0])
        for k in one
        if isinstance(one[k], Tensor) and one[k].dim() > 0 and one[k].shape != two[k].shape
    }


def _mixed_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003**2 + rank * 1_000_003 + step) % 2**63


class _GatherRows(torch.autograd.Function):
    """``weight[rows]`` whose gradient is a sparse (rows x D) tensor, not a dense zero-filled
    copy of the whole shard (which would add a shard-sized temporary to the backward)."""

    @staticmethod
    def forward(ctx, weight: Tensor, rows: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(rows)
        ctx.shape = weight.shape
        return weight[rows]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (rows,) = ctx.saved_tensors
        with torch.sparse.check_sparse_tensor_invariants(False):
            sparse = torch.sparse_coo_tensor(rows[None], grad, ctx.shape, is_coalesced=False)
        return sparse, None


@dataclass(eq=False)
class _RankShard(Shard):
    """This rank's shard: the reductions of :class:`Shard` over the ranks of ``info``."""

    info: GroupInfo = GroupInfo(None, 0, 1)

    def own(self, t: Tensor) -> Tensor:
        return torch.where(self.owned, t, t.detach())

    def sum(self, local: Tensor) -> Tensor:
        return all_reduce_sum_partial(local, self.info)

    def logsumexp(self, local: Tensor) -> Tensor:
        return global_logsumexp(local, self.info)

    def replicated(self, t: Tensor) -> Tensor:
        return t if self.info.rank == 0 else t.detach()  # its gradient counted on rank 0


def _check_supported(head: MarginHead, sample_rate: float) -> None:
    """ValueError when PartialFC cannot compute ``head``'s loss over shards."""
    name = type(head).__name__
    if not head.shardable:
        raise ValueError(
            f"PartialFC cannot shard head {name}: it overrides loss(), which PartialFC does "
            "not call; a head with a loss of its own defines loss_over(shard) instead "
            "(docs/CONTRACTS.md, 'Add a head')"
        )
    if head.batch_scaled and sample_rate < 1.0:
        raise ValueError(
            f"PartialFC cannot sample classes (sample_rate={sample_rate}) for head {name} "
            "with a dynamic scale: the scale's sum over the non-target classes would cover "
            "only the sampled ones; use sample_rate=1 or the fixed scale (dynamic=False)"
        )


def _head_kind(
    head: str | MarginHead, embedding_size: int | None, num_classes: int | None, head_hparams: dict
) -> tuple[MarginHead | None, type[MarginHead], dict, int, int]:
    """What PartialFC builds its shard from: (the full head or None, its class, its
    hyperparameters, D, C), from a head instance or from a head name with its sizes."""
    if isinstance(head, MarginHead):
        if head_hparams:
            raise ValueError(
                f"head hyperparameters {sorted(head_hparams)} given with a "
                "head instance; set them on the instance"
            )
        for name, given, actual in (
            ("embedding_size", embedding_size, head.embedding_size),
            ("num_classes", num_classes, head.num_classes),
        ):
            if given is not None and given != actual:
                raise ValueError(f"{name}={given} differs from the head's {actual}")
        return head, type(head), head.hparams(), head.embedding_size, head.num_classes
    if not isinstance(head, str):
        raise ValueError(f"head must be a head name or a MarginHead, got {type(head)!r}")
    if embedding_size is None or num_classes is None:
        raise ValueError("embedding_size and num_classes are needed with a head name")
    # the defaults that depend on the class count: those of all classes
    cls = head_class(head)
    hparams = cls.hparams_for(num_classes, head_hparams)
    check_hparams(head, hparams)
    return None, cls, hparams, embedding_size, num_classes


class PartialFC(nn.Module):
    """Model-parallel (and optionally sampled) margin classifier: ``loss = pfc(x, y)``.

    Args:
        head: a head name of :func:`marginface.heads.list_heads` (then ``embedding_size``,
            ``num_classes`` and ``**head_hparams`` build it, only this rank's shard is
            allocated, initialised identically for every world size from ``seed``), or a
            full head instance (``num_classes`` = all classes), whose centres are sliced.
        embedding_size: D.
        num_classes: C, all classes over all ranks.
        sample_rate: 0 < r <= 1; below 1, each training step keeps every class positive in
            the global batch plus a uniform sample of the others, ceil(r * shard) per rank
            (or all positives when there are more); needs :meth:`attach_optimizer`.
        process_group: a ``torch.distributed`` ProcessGroup, ``None`` for the default group
            (must be initialised: ValueError otherwise), or ``"local"`` for one process.
        seed: seeds the centre initialisation (by name) and the sampling generators.
        embedding_grad_scale: factor on the gradient of the local embeddings; 1 gives the
            exact gradient of the global mean loss.  Set it to the world size when the
            backbone is wrapped in DistributedDataParallel, which averages its gradients
            over the ranks (InsightFace does the same).
        chunk_size, memory_budget: chunking of the fused loss (see marginface.heads.engine).
        path: the path of the fused loss (:func:`marginface.heads.engine.choose_path`), decided
            once for the model: ``"auto"`` decides it on every call.
        shard: ``(rank, world_size)`` with ``process_group="local"``: build that rank's shard
            without communication (offline state building, benchmarks); its loss is then
            that shard's alone, not the global loss.

    Shapes: ``forward(embeddings (B, D), labels (B,) int in [0, C)) -> scalar loss``, the mean
    over the global batch of W * B rows, identical on every rank; B must be equal on all.
    """

    def __init__(
        self,
        head: str | MarginHead,
        embedding_size: int | None = None,
        num_classes: int | None = None,
        sample_rate: float = 1.0,
        process_group: Any = None,
        *,
        seed: int = 0,
        embedding_grad_scale: float = 1.0,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        path: str = "auto",
        shard: tuple[int, int] | None = None,
        **head_hparams: Any,
    ) -> None:
        super().__init__()
        if not (isinstance(sample_rate, (int, float)) and 0.0 < sample_rate <= 1.0):
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate!r}")
        info = resolve_group(process_group)
        if shard is not None:
            if info.group is not None:
                raise ValueError("shard=(rank, world_size) is only for process_group='local'")
            rank, world = (int(v) for v in shard)
            info = GroupInfo(None, rank, world)
            self._simulated = True
        else:
            self._simulated = False
        self._info = info
        full, head_cls, hparams, embedding_size, num_classes = _head_kind(
            head, embedding_size, num_classes, head_hparams
        )
        check_positive_int(num_classes, "num_classes")
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.sample_rate, self.seed = float(sample_rate), int(seed)
        self.embedding_grad_scale = float(embedding_grad_scale)
        self.chunk_size, self.memory_budget, self.path = chunk_size, memory_budget, path
        self.class_start, self.class_end = shard_range(num_classes, info.world_size, info.rank)
        n_local = self.class_end - self.class_start
        self.class_keys = per_class_keys(head_cls, embedding_size, hparams)
        self.head = head_cls(embedding_size, max(1, n_local), **hparams)
        _check_supported(self.head, self.sample_rate)
        self._fill_shard(full, head_cls)
        if full is None:
            self.head.init_shared(num_classes)
        self.head.num_classes = n_local
        self.sampling = self.sample_rate < 1.0
        self.num_sample = num_samples(self.sample_rate, n_local)
        self.active = ActiveRows(embedding_size, "bias" in self.class_keys)
        if self.sampling:
            for key in self.class_keys:
                self._tensor(key).requires_grad_(False)
        else:
            self.active.requires_grad_(False)
        self.row_state: dict[str, dict[str, Tensor]] = {k: {} for k in self.class_keys}
        self.step = 0
        self.generator = torch.Generator().manual_seed(_mixed_seed(self.seed, info.rank, 0))
        self._index: Tensor | None = None  # local ids of the classes sampled in the last step
        self._optimizers: list[Any] = []
        self._warned = False
        self._consumed = True  # the last sampled rows' gradient went through a step
        self._sync_replicated_grads()

    # ------------------------------------------------------------------ construction helpers
    def _tensor(self, key: str) -> Tensor:
        """The head's parameter or buffer named ``key`` (state-dict key relative to head)."""
        try:
            return self.head.get_parameter(key)
        except AttributeError:
            return self.head.get_buffer(key)

    def _fill_shard(self, full: MarginHead | None, head_cls: type[MarginHead]) -> None:
        """Put this rank's rows of every per-class tensor in the shard head."""
        s0, s1 = self.class_start, self.class_end
        sd = full.state_dict() if full is not None else {}
        for key, value in sd.items():
            if key not in self.class_keys and isinstance(value, Tensor):
                self._tensor(key).data = value.detach().clone()
        for key, k in self.class_keys.items():
            t = self._tensor(key)
            if full is not None:
                new = sd[key][s0 * k : s1 * k].detach().clone()
            elif key == "weight" and head_cls.seeded_centres:
                new = seeded_xavier_rows(
                    s0 * k, s1 * k, self.num_classes * k, self.embedding_size, self.seed, t.dtype
                )
            else:  # the head's own initialisation of this shard
                new = t.data[: (s1 - s0) * k]
            t.data = new.to(t.device, t.dtype)

    def _sync_replicated_grads(self) -> None:
        """Replicated head tensors (not per class) start as rank 0's (e.g. an unseeded
        random state), and the gradients of replicated parameters are summed over ranks."""
        if self._info.group is None:
            return
        import torch.distributed as dist

        replicated = {
            k: v.detach().cpu()
            for k, v in self.head.state_dict().items()
            if k not in self.class_keys and isinstance(v, Tensor)
        }
        box = [replicated]
        src = dist.get_global_rank(self._info.group, 0)
        dist.broadcast_object_list(box, src=src, group=self._info.group)
        for key, value in box[0].items():
            t = self._tensor(key)
            t.data = value.to(t.device, t.dtype)
        for name, p in self.head.named_parameters():
            if name not in self.class_keys and p.requires_grad:
                p.register_hook(lambda g: all_reduce_(g.clone(), self._info.group))

    # ------------------------------------------------------------------------- properties
    @property
    def rank(self) -> int:
        return self._info.rank

    @property
    def world_size(self) -> int:
        return self._info.world_size

    @property
    def process_group(self) -> Any:
        return self._info.group

    @property
    def state_module(self) -> PartialFC:
        """The module whose state is this classifier's (its shard, sampling generator and row
        optimizer state): itself (a replicated head's is the head)."""
        return self

    @property
    def collective_state(self) -> bool:
        """True when :meth:`full_state_dict` needs every rank (a process group of several)."""
        return self._info.group is not None

    def synchronised_names(self) -> list[str]:
        """Every parameter and buffer: PartialFC keeps them in step over the ranks itself, so
        a DistributedDataParallel around it must neither broadcast nor all-reduce them."""
        return [n for n, _ in self.named_parameters()] + [n for n, _ in self.named_buffers()]

    @property
    def sampled_classes(self) -> Tensor | None:
        """Global ids (sorted) of this rank's classes used in the last sampled step."""
        return None if self._index is None else self._index + self.class_start

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, classes=[{self.class_start}, {self.class_end}),"
            f" rank={self.rank}/{self.world_size}, sample_rate={self.sample_rate}"
        )

    # ---------------------------------------------------------------------------- checks
    def _check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """ValueError, raised on every rank alike, for inputs that do not fit (per rank)."""
        if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
            raise ValueError(
                "embeddings and labels must be torch.Tensors, got "
                f"{type(embeddings).__name__} and {type(labels).__name__}"
            )
        lab_ok = not (
            labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool
        )
        lo = hi = 0
        if lab_ok and labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
        meta = torch.tensor(
            [
                embeddings.shape[0] if embeddings.dim() else -1,
                embeddings.shape[1] if embeddings.dim() == 2 else -1,
                int(embeddings.is_floating_point()),
                int(lab_ok),
                labels.shape[0] if labels.dim() == 1 else -1,
                lo,
                hi,
            ],
            dtype=torch.long,
            device=embeddings.device,
        )
        table = all_gather_plain(meta[None], self._info.group, self.world_size).tolist()

        def per_rank(col: int) -> str:
            return ", ".join(f"rank {r}: {row[col]}" for r, row in enumerate(table))

        ws = self.world_size
        if any(row[1] != self.embedding_size for row in table):
            raise ValueError(
                f"embeddings must have shape (B, {self.embedding_size}); "
                f"width per rank: {per_rank(1)}"
            )
        if len({row[0] for row in table}) > 1:
            raise ValueError(
                f"the batch size differs between the {ws} ranks ({per_rank(0)}); every rank "
                "must pass the same number of embeddings (e.g. drop_last=True)"
            )
        if table[0][0] == 0:
            raise ValueError("embeddings is an empty batch (B = 0) on every rank")
        if not all(row[2] for row in table):
            raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
        if not all(row[3] for row in table):
            raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
        if any(row[4] != row[0] for row in table):
            raise ValueError(
                f"labels must have shape (B,) to match the embeddings; "
                f"labels per rank: {per_rank(4)}, batch per rank: {per_rank(0)}"
            )
        if any(row[5] < 0 or row[6] >= self.num_classes for row in table):
            ranges = ", ".join(f"rank {r}: [{row[5]}, {row[6]}]" for r, row in enumerate(table))
            raise ValueError(f"labels must lie in [0, {self.num_classes}); got {ranges}")

    # --------------------------------------------------------------------------- forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean margin cross-entropy over the global batch; call it on every rank.

        Args:
            embeddings: (B, D) this rank's embeddings (any float dtype; computed in fp32).
            labels: (B,) int global class ids in [0, C).

        Returns:
            scalar loss, the same on every rank (mean over W * B rows).
        """
        self._check_inputs(embeddings, labels)
        labels = labels.to(embeddings.device, torch.long)
        with no_autocast(embeddings.device.type):
            x_all = all_gather_with_grad(embeddings, self._info, self.embedding_grad_scale)
            y_all = all_gather_plain(labels, self._info.group, self.world_size)
            return self.global_batch_loss(x_all, y_all)

    def global_batch_loss(self, x_all: Tensor, y_all: Tensor) -> Tensor:
        """The loss of the already gathered global batch, (N, D) and (N,): this rank's part."""
        head = self.head
        x = x_all.to(head.compute_dtype(x_all))
        owned = (y_all >= self.class_start) & (y_all < self.class_end)
        rows = owned.nonzero().squeeze(1)
        local = y_all[rows] - self.class_start
        weight, bias = self._weights(local, x.dtype)
        if self._index is not None and self.training and self.sampling:
            local = torch.searchsorted(self._index, local)
        k = head.subcenters

        def targets(xn: Tensor) -> tuple[Tensor, Tensor]:
            z_own = target_scores(
                xn[rows], weight, bias, local, k, head.normalize, _GatherRows.apply
            )
            # the target score of every row, known on every rank; gradient on the owner only
            zeros = x.new_zeros(x.shape[0])
            cos_all = all_reduce_(zeros.index_put((rows,), z_own.detach()), self._info.group)
            labels = torch.full_like(y_all, -1).index_put((rows,), local)
            return labels, cos_all.index_put((rows,), z_own)

        shard = build_shard(
            x,
            weight,
            bias,
            y_all,
            num_classes=self.num_classes,
            subcenters=k,
            normalize=head.normalize,
            chunk_size=self.chunk_size,
            memory_budget=self.memory_budget,
            path=self.path,
            targets=targets,
            kind=_RankShard,
            info=self._info,
        )
        return head.sharded_loss(shard)

    def _weights(self, local_pos: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """The centres (and bias) this step uses: the whole shard, or the sampled rows."""
        head = self.head
        if not (self.sampling and self.training):
            bias = head.class_bias()
            return head.weight.to(dtype), None if bias is None else bias.to(dtype)
        self._release_previous()
        positive = torch.unique(local_pos, sorted=True)
        self._index = sample_classes(positive, head.num_classes, self.num_sample, self.generator)
        self._consumed = not torch.is_grad_enabled()
        self.step += 1
        for key, old in self.active.named():
            full = self._tensor(key)
            rows = class_rows(self._index, self.class_keys[key])
            self._swap_active(key, old, nn.Parameter(full.detach().index_select(0, rows)))
        if torch.is_grad_enabled() and not self._optimizers and not self._warned:
            self._warned = True
            warnings.warn(
                "PartialFC(sample_rate < 1) without attach_optimizer(optimizer): "
                "the sampled centres' updates will not reach the shard",
                stacklevel=3,
            )
        bias = self.active.bias
        return self.active.weight.to(dtype), None if bias is None else bias.to(dtype)

    def _swap_active(self, key: str, old: nn.Parameter, new: nn.Parameter) -> None:
        """A fresh Parameter for this step's rows (the row count may change, and autograd
        caches a leaf's shape), put in place of the old one in the attached optimizers."""
        setattr(self.active, key, new)
        for opt in self._optimizers:
            for group in opt.param_groups:
                group["params"] = [new if q is old else q for q in group["params"]]
            if old in opt.state:
                opt.state[new] = opt.state.pop(old)

    def _release_previous(self) -> None:
        """Before sampling anew: the last rows' gradient must have been used by a step."""
        for _, p in self.active.named():
            if self._optimizers and not self._consumed and p.grad is not None and p.grad.any():
                raise ValueError(
                    "PartialFC with sample_rate < 1: the gradient of the previously sampled "
                    "centres was never used by an optimizer step; take one optimizer step "
                    "(and zero_grad) per forward: gradient accumulation over several "
                    "forwards is not supported with sampling"
                )
            p.grad = None

    # -------------------------------------------------------------------- optimizer hooks
    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Let ``optimizer`` update the sampled centres (needed when sample_rate < 1).

        ``optimizer`` must hold ``pfc.parameters()`` (the sampled rows' Parameters are in
        there).  Hooks gather the sampled rows' optimizer state before each step and write
        rows and state back after it; unsampled rows are not touched.  Harmless at rate 1.
        """
        if not self.sampling or optimizer in self._optimizers:
            return
        held = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if id(self.active.weight) not in held:
            raise ValueError(
                "the optimizer does not hold PartialFC's parameters: build it "
                "with pfc.parameters() (e.g. a parameter group) first"
            )
        optimizer.register_step_pre_hook(lambda opt, args, kw: self._before_step(opt))
        optimizer.register_step_post_hook(lambda opt, args, kw: self._after_step(opt))
        self._optimizers.append(optimizer)

    def _stepped(self) -> list[tuple[str, nn.Parameter, Tensor]]:
        if self._index is None:
            return []
        return [
            (key, p, class_rows(self._index, self.class_keys[key]))
            for key, p in self.active.named()
            if p.grad is not None
        ]

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        for key, p, rows in self._stepped():
            gather_row_state(optimizer, p, self.row_state[key], rows)

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._consumed = True
        for key, p, rows in self._stepped():
            full = self._tensor(key)
            full.data.index_copy_(0, rows, p.data.to(full.dtype))
            scatter_row_state(optimizer, p, self.row_state[key], rows, full.shape[0])

    # ----------------------------------------------------------------------------- state
    def get_extra_state(self) -> dict[str, Any]:
        """Sharding, sampling generator and the full-size row optimizer state of this rank."""
        return {
            "format": STATE_FORMAT,
            "head_name": self.head.head_name,
            "head_hparams": self.head.hparams(),
            "num_classes": self.num_classes,
            "embedding_size": self.embedding_size,
            "class_keys": dict(self.class_keys),
            "rank": self.rank,
            "world_size": self.world_size,
            "class_range": (self.class_start, self.class_end),
            "sample_rate": self.sample_rate,
            "seed": self.seed,
            "step": self.step,
            "generator_state": self.generator.get_state(),
            "row_state": {
                k: {n: t.detach().cpu() for n, t in v.items()} for k, v in self.row_state.items()
            },
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(
                "not a PartialFC state dict (its _extra_state is missing or of another format)"
            )
        for key in ("num_classes", "embedding_size"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"state dict has {key}={state[key]}, this module {getattr(self, key)}"
                )
        mine = (self.class_start, self.class_end)
        if tuple(state["class_range"]) != mine:
            raise ValueError(
                f"state dict holds classes {tuple(state['class_range'])} (rank {state['rank']} "
                f"of {state['world_size']}), this module rank {self.rank} of "
                f"{self.world_size} holds {mine}: re-shard it with "
                "marginface.parallel.reshard_state_dicts or save/load a full state "
                "(full_state_dict / load_full_state_dict)"
            )
        self.step = int(state["step"])
        gen_state = state.get("generator_state")
        if gen_state is not None:
            self.generator.set_state(gen_state)
        else:  # re-sharded: a fresh stream per rank, that also depends on the step
            self.generator.manual_seed(_mixed_seed(int(state["seed"]), self.rank, self.step))
        device = self.head.weight.device
        self.row_state = {
            k: {n: t.to(device) for n, t in state["row_state"].get(k, {}).items()}
            for k in self.class_keys
        }
        self._index = None

    def full_state_dict(self, dst: int = 0) -> dict[str, Any] | None:
        """Rank-independent state of all classes, on rank ``dst`` (None elsewhere).

        Collective: call it on every rank.  Uses ``gather_object`` (NCCL: set the device).
        """
        mine = {
            k: (v.detach().cpu() if isinstance(v, Tensor) else v)
            for k, v in self.state_dict().items()
        }
        if self._info.group is None:
            return gather_full_state([mine])
        import torch.distributed as dist

        parts = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(
            mine,
            parts,
            dst=dist.get_global_rank(self._info.group, dst)
            if self._info.group is not dist.group.WORLD
            else dst,
            group=self._info.group,
        )
        return gather_full_state(parts) if self.rank == dst else None

    def full_weight(self, dst: int = 0) -> Tensor | None:
        """The centres of all classes, (C * K, D), on rank ``dst`` (None elsewhere);
        collective, as :meth:`full_state_dict`."""
        full = self.full_state_dict(dst)
        return None if full is None else full["head.weight"]

    def load_full_state_dict(self, full: dict[str, Any]) -> None:
        """Load this rank's part of a full state (any world size saved it)."""
        self.load_state_dict(shard_full_state(full, self.world_size, self.rank))


__all__ = ["LOCAL", "PartialFC", "per_class_keys", "target_scores"]
