"""The base class of every margin head, and the protocol of its loss.

A head owns the class centres ``weight`` of shape (num_classes, embedding_size) and maps
embeddings (B, D) to logits (B, C).  Subclasses change the target logit only, through
:meth:`MarginHead.margin` (the modified target cosine), and optionally the row scale
(:meth:`MarginHead.row_scale`), the hard negatives (:meth:`MarginHead.negative_modulation`)
and the training state (:meth:`MarginHead.update_state`).  The base class turns these hooks
into the dense logits of :meth:`forward`, the chunked, fused :meth:`loss` and the loss over a
shard of the classes that :class:`marginface.parallel.PartialFC` computes on each process
(:meth:`MarginHead.loss_over`).  A head whose scale is re-estimated from each batch (AdaCos)
sets :attr:`MarginHead.batch_scaled` and implements :meth:`MarginHead.update_scale`.

A head with a loss of its own (not the margin softmax of these hooks) overrides
:meth:`MarginHead.loss_over`, which computes it from a :class:`~marginface.heads.engine.Shard`,
and :meth:`MarginHead.loss_from_logits`; :meth:`loss` then uses it on one process holding all
classes, Partial FC on each shard.  The per-class binary heads share
:class:`marginface.heads.binary.BinaryHead`.  :meth:`loss` itself is a template that no head
overrides: a term of the embeddings alone goes in :meth:`MarginHead.extra_loss` (MagFace).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginface.checks import check_positive_int
from marginface.heads._math import EPS, no_autocast
from marginface.heads.engine import Shard, build_shard, fused_margin_terms, margin_softmax_loss
from marginface.heads.traits import check_traits


class MarginHead(nn.Module):
    """Normalised-softmax head: logits s * cos(theta_j), the target changed by :meth:`margin`.

    Args:
        embedding_size: width D of the embeddings.
        num_classes: number of classes C.
        s: scale of the cosine logits.

    Shapes: ``forward(embeddings (B, D), labels (B,) | None) -> logits (B, C)``, float32 for
    float32/float16/bfloat16 inputs (autocast included), float64 when the input or the weight
    is float64.
    """

    head_name: ClassVar[str] = "base"
    #: cosine heads normalise features and centres; the plain softmax head does not
    normalize: ClassVar[bool] = True
    #: class centres per class (sub-centre heads store C * K rows, class-major)
    subcenters: int = 1
    #: share w of the margin in the target, in [0, 1]: the target cosine is
    #: w * margin(cos) + (1 - w) * cos. 1 (the head as published) unless a training schedule
    #: warms the margin up (``TrainConfig.margin_warmup_epochs``); not saved with the weights.
    margin_weight: float = 1.0
    # ------------------------------------------------------------------------ the traits
    #: the loss: ``"margin_softmax"`` (the cross-entropy of the hooks' logits, by the fused
    #: kernel), ``"binary"`` (:class:`~marginface.heads.binary.BinaryHead`'s per-class terms)
    #: or ``"own"`` (the head's :meth:`loss_over`). A class that defines :meth:`loss_over`
    #: without saying is ``"own"``.
    loss_kind: ClassVar[str] = "margin_softmax"
    #: the scale of the logits: ``"auto"`` (a fixed ``s`` that ``s = auto`` fits to the number
    #: of classes, :mod:`marginface.heads.scale`), ``"fixed"`` (a given ``s`` that ``auto``
    #: does not fit: logits not of the margin softmax's shape), ``"own"`` (the head sets it:
    #: AdaCos), ``"feature_norm"`` (SphereFace) or ``"none"`` (the plain softmax). Where
    #: ``"auto"`` (the default) or ``"none"`` cannot hold, the class gets what does.
    scale_policy: ClassVar[str] = "auto"
    #: what :meth:`update_state` keeps: ``"none"``, ``"steps"`` (advanced by every training
    #: call whatever its batch) or ``"running_statistics"`` (of the batches, AdaFace's norm
    #: mean/std, CurricularFace's t: a batch with a non-finite target cosine or feature norm
    #: is left out of them, with a warning the first time, rather than making them NaN for
    #: every later batch; the check costs one scalar device-to-host copy per training call).
    #: A class that defines :meth:`update_state` without saying is ``"steps"``.
    state: ClassVar[str] = "none"
    #: what Partial FC needs, found by the trait check, not declared: ``shardable``, the
    #: class keeps :meth:`loss` as the template (PartialFC computes :meth:`sharded_loss` on
    #: each shard instead); ``seeded_centres``, its centres start as the Xavier-uniform rows
    #: of :meth:`reset_parameters` (PartialFC draws each shard's rows seeded by name)
    shardable: ClassVar[bool] = True
    seeded_centres: ClassVar[bool] = True
    #: found by the trait check: the class's :meth:`margin` is its :meth:`margin_of` (it
    #: replaces neither, or it defines :meth:`margin_of`), so the margin can be read from the
    #: class and its hyperparameters without building a head
    margin_from_class: ClassVar[bool] = True
    #: the constructor arguments a registered variant fixes (not hyperparameters of it:
    #: :func:`~marginface.heads.registry.register_variant`); none here
    fixed_hparams: ClassVar[Mapping[str, object]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        """The trait check: once, when a head class is defined."""
        super().__init_subclass__(**kwargs)
        check_traits(cls, MarginHead)

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0) -> None:
        super().__init__()
        check_positive_int(embedding_size, "embedding_size")
        check_positive_int(num_classes, "num_classes")
        if not s > 0:
            raise ValueError(f"s (scale) must be positive, got {s}")
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.s = float(s)
        self.weight = nn.Parameter(torch.empty(num_classes * self.subcenters, embedding_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)

    # ----------------------------------------------------------------- hooks for subclasses
    def row_scale(self, norms: Tensor) -> Tensor:
        """(B,) factor of every logit of a row; ``norms`` are the feature norms ‖x_i‖."""
        return norms.new_full(norms.shape, self.s)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        """Target cosine after the margin, (B,) from (B,): :meth:`margin_of` with this head's
        hyperparameters and state; identity here (NormFace)."""
        return self.margin_of(cos_y, norms)

    @classmethod
    def margin_of(cls, cos_y: Tensor, norms: Tensor, **params: object) -> Tensor:
        """The formula of :meth:`margin`: the target cosine (B,) from ``cos_y`` (B,) and the
        feature norms (B,) of a head of this class whose hyperparameters and state are
        ``params`` (the constructor's hyperparameters by name, as the head stores them, and
        its state buffers by name; those the formula does not read are ignored).

        A head's :meth:`margin` is this with its own values, so the formula is written once:
        :func:`~marginface.heads.scale.resolve_scale` reads psi(1) from the class with
        :meth:`fresh_params`, building no head. Identity here (NormFace)."""
        return cos_y

    @classmethod
    def initial_state(cls) -> dict[str, Tensor]:
        """The state buffers :meth:`margin_of` reads, with the value a new head starts from
        (the constructor registers them from here); none here."""
        return {}

    @classmethod
    def fresh_params(cls, hparams: Mapping[str, object]) -> dict[str, object]:
        """:meth:`margin_of`'s ``params`` for a head of this class built with ``hparams``
        (the others at their defaults) as it starts, in eval mode: the constructor's
        arguments (those a registered variant fixes included) and :meth:`initial_state`."""
        return {**cls.default_hparams(), **hparams, **cls.fixed_hparams, **cls.initial_state()}

    def negative_modulation(self, cos_y: Tensor, norms: Tensor) -> tuple[Tensor, float] | None:
        """Optional (threshold (B,), t): non-targets z > threshold become z (t + z)."""
        return None

    def update_state(self, cos_y: Tensor, norms: Tensor) -> None:
        """Advance training state; called once per labelled call in training mode (detached)."""

    def _advance_state(self, cos_y: Tensor, norms: Tensor) -> None:
        """:meth:`update_state`, skipped for a non-finite batch where the head's
        :attr:`state` is running statistics."""
        if self.state == "running_statistics" and not self._finite_batch(cos_y, norms):
            return
        self.update_state(cos_y, norms)

    def _finite_batch(self, *values: Tensor) -> bool:
        ok = bool(torch.stack([torch.isfinite(v).all() for v in values]).all())
        if not ok and not getattr(self, "_warned_non_finite", False):
            import warnings

            warnings.warn(
                f"{self.head_name}: a training batch with NaN or infinite features was left out "
                "of the head's running statistics (said once per head)",
                RuntimeWarning,
                stacklevel=4,
            )
            self._warned_non_finite = True
        return ok

    def target(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        """The target cosine: :meth:`margin`, blended with the plain cosine while the margin
        warms up (:attr:`margin_weight` below 1), (B,)."""
        psi = self.margin(cos_y, norms)
        w = float(self.margin_weight)
        if w >= 1.0:
            return psi
        return w * psi + (1.0 - w) * cos_y.to(psi.dtype)

    @property
    def batch_scaled(self) -> bool:
        """True when :meth:`update_scale` re-estimates the row scale from each training batch."""
        return False

    def update_scale(self, lse_neg: Tensor, cos_y: Tensor) -> None:
        """Set the row scale from a training batch before its logits are formed; called once
        per labelled call in training mode when :attr:`batch_scaled` (before
        :meth:`update_state`).  ``lse_neg`` (B,): log sum_{j != y_i} exp(r_i z_ij) at the
        current row scale; ``cos_y`` (B,): the target scores; both detached.  Costs one
        more no-grad pass over the classes in the fused loss."""

    # ------------------------------------------------------- the loss: hooks and templates
    def class_bias(self) -> Tensor | None:
        """(C,) the bias added to each class's score (the plain softmax head), or None."""
        return None

    def extra_loss(self, x: Tensor) -> Tensor | None:
        """A term of the embeddings alone added to the loss (MagFace's regulariser), from
        ``x`` (B, D) in the compute dtype; None (the default) for none."""
        return None

    def loss_from_logits(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss from the (B, C) logits of ``forward(x, y)`` (without :meth:`extra_loss`):
        the mean cross-entropy here."""
        return F.cross_entropy(logits, labels.long())

    @property
    def own_loss(self) -> bool:
        """True when the loss is this head's :meth:`loss_over` rather than the margin softmax
        of its hooks (:attr:`loss_kind`): :meth:`loss` then computes it over one shard of all
        classes, instead of with the chunked margin-softmax kernel."""
        return self.loss_kind != "margin_softmax"

    def loss_over(self, shard: Shard) -> Tensor:
        """The mean loss of the batch over the classes of ``shard`` (this process's part of
        it; its reductions combine the parts), without :meth:`extra_loss`: here the margin
        softmax of the hooks."""
        norms, cos_y = shard.norms, shard.cos_y
        scale = self.row_scale(norms)
        if self.training and self.batch_scaled:  # AdaCos: the scale from the whole batch
            with torch.no_grad():
                lse_old = shard.softmax_logsumexp(scale)
            self.update_scale(lse_old, cos_y.detach())
            scale = self.row_scale(norms)
        target, neg = self._margin_parts(cos_y, norms, scale)
        target = shard.own(target)
        return (shard.softmax_logsumexp(scale, target, neg) - target).mean()

    def sharded_loss(self, shard: Shard) -> Tensor:
        """Template (Partial FC): :meth:`loss_over` plus :meth:`extra_loss`, counted once."""
        loss = self.loss_over(shard)
        extra = self.extra_loss(shard.x)
        return loss if extra is None else loss + shard.replicated(extra)

    @classmethod
    def hparams_for(cls, num_classes: int, hparams: Mapping[str, object]) -> dict[str, object]:
        """``hparams`` with the hyperparameters whose default depends on the number of classes
        set to their value for ``num_classes`` (a head of one shard of the classes is built
        for fewer; AdaCos's scale).  Unchanged here."""
        return dict(hparams)

    def init_shared(self, num_classes: int) -> None:
        """Set the tensors shared by all classes (not per class) to their initial value for
        ``num_classes`` classes in all (a head of one shard is built for its shard's count;
        the binary heads' bias).  Nothing here."""

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hparams().items())
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, {hp}"

    @classmethod
    def default_hparams(cls) -> dict[str, object]:
        """The hyperparameters of this class's constructor (beyond the two sizes), with their
        defaults: what :func:`~marginface.heads.create_head` accepts for it."""
        params = inspect.signature(cls.__init__).parameters
        return {
            k: p.default
            for k, p in params.items()
            if k not in ("self", "embedding_size", "num_classes")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def hparams(self) -> dict[str, object]:
        """The constructor hyperparameters of this head, as set (to rebuild it: the class, or
        create_head with its name); those it stores under their own name."""
        return {k: getattr(self, k) for k in self.default_hparams() if hasattr(self, k)}

    def check_inputs(self, embeddings: Tensor, labels: Tensor | None) -> None:
        """ValueError with the numbers for a wrong shape, dtype, width or label."""
        if not isinstance(embeddings, Tensor):
            raise ValueError(f"embeddings must be a torch.Tensor, got {type(embeddings).__name__}")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"embeddings must have shape (B, {self.embedding_size}), "
                f"got {tuple(embeddings.shape)}"
            )
        if not embeddings.is_floating_point():
            raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
        if labels is None:
            return
        if not isinstance(labels, Tensor):
            raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"labels must have shape ({embeddings.shape[0]},) to match the embeddings, "
                f"got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(
                    f"labels must lie in [0, {self.num_classes}), got values in [{lo}, {hi}]"
                )

    def compute_dtype(self, x: Tensor) -> torch.dtype:
        """float32, or float64 when the embeddings or the weight are float64."""
        if torch.float64 in (x.dtype, self.weight.dtype):
            return torch.float64
        return torch.float32

    def _w(self, dtype: torch.dtype) -> Tensor:
        return self.weight.to(dtype)

    def check_loss_inputs(self, embeddings: Tensor, labels: Tensor | None) -> None:
        """As :meth:`check_inputs`, and labels are required and the batch must not be empty."""
        if labels is None:
            raise ValueError("loss() needs labels")
        self.check_inputs(embeddings, labels)
        if embeddings.shape[0] == 0:
            raise ValueError("embeddings is an empty batch (B = 0): the mean loss is undefined")

    def scores(self, x: Tensor) -> Tensor:
        """(B, C) cosines (or raw scores for the plain softmax head), in ``x``'s dtype."""
        w = self._w(x.dtype)
        if self.normalize:
            z = F.linear(F.normalize(x, dim=1, eps=EPS), F.normalize(w, dim=1, eps=EPS))
        else:
            bias = self.class_bias()
            z = F.linear(x, w, None if bias is None else bias.to(x.dtype))
        if self.subcenters > 1:
            z = z.view(z.shape[0], self.num_classes, self.subcenters).amax(dim=2)
        return z

    def _margin_parts(self, cos_y: Tensor, norms: Tensor, scale: Tensor):
        if self.training:
            self._advance_state(cos_y.detach(), norms.detach())
        target = scale * self.target(cos_y, norms)
        return target, self.negative_modulation(cos_y, norms)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, C), float32: with the margin on each row's target when labels are given."""
        self.check_inputs(embeddings, labels)
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self.compute_dtype(embeddings))
            norms = x.norm(dim=1)
            scale = self.row_scale(norms)
            z = self.scores(x)
            if labels is None:
                return z * scale[:, None]
            labels = labels.long()
            cos_y = z.gather(1, labels[:, None]).squeeze(1)
            if self.training and self.batch_scaled:
                with torch.no_grad():
                    old = (z * scale[:, None]).scatter(1, labels[:, None], -math.inf)
                    self.update_scale(old.logsumexp(dim=1), cos_y.detach())
                scale = self.row_scale(norms)
            target, neg = self._margin_parts(cos_y, norms, scale)
            if neg is not None:
                threshold, t = neg
                z = torch.where(z > threshold[:, None], z * (t + z), z)
            logits = z * scale[:, None]
            return logits.scatter(1, labels[:, None], target[:, None].to(logits.dtype))

    def loss(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        fused: bool = True,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        path: str = "auto",
    ) -> Tensor:
        """The mean loss, for the margin heads the cross-entropy ``F.cross_entropy(self(x, y),
        y)``, plus :meth:`extra_loss`.

        With ``fused`` (the default) it never holds the (B, C) logits (:meth:`fused_loss`);
        else it is :meth:`loss_from_logits` of the dense logits.  ``chunk_size`` (classes per
        chunk) or ``memory_budget`` (bytes for the chunk temporaries) tune the chunking.
        ``path``: ``"auto"`` (the chunked PyTorch code; the Triton kernel on CUDA when the
        environment variable ``MARGINFACE_FUSED_PATH`` is ``triton``), ``"torch"`` or
        ``"triton"``; see :func:`marginface.heads.engine.choose_path`. A model decides it once
        and passes it here (the trainer's classifier does).
        """
        self.check_loss_inputs(embeddings, labels)
        labels = labels.long()
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self.compute_dtype(embeddings))
            if fused:
                chunking = dict(chunk_size=chunk_size, memory_budget=memory_budget)
                loss = self.fused_loss(x, labels, path=path, **chunking)
            else:
                loss = self.loss_from_logits(self(embeddings, labels), labels)
            extra = self.extra_loss(x)
            return loss if extra is None else loss + extra

    def local_shard(
        self,
        x: Tensor,
        labels: Tensor,
        *,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        path: str = "auto",
    ) -> Shard:
        """The :class:`Shard` of all classes on one process, for the batch ``x`` (B, D) in the
        compute dtype and ``labels`` (B,) int64."""
        bias = self.class_bias()
        return build_shard(
            x,
            self._w(x.dtype),
            None if bias is None else bias.to(x.dtype),
            labels,
            num_classes=self.num_classes,
            subcenters=self.subcenters,
            normalize=self.normalize,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            path=path,
        )

    def fused_loss(
        self,
        x: Tensor,
        labels: Tensor,
        *,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        path: str = "auto",
    ) -> Tensor:
        """The loss of ``x`` (B, D) in the compute dtype without the (B, C) logits: the head's
        :meth:`loss_over` of :meth:`local_shard` when it has its :attr:`own_loss`, else the
        margin softmax with :func:`marginface.heads.engine.fused_margin_terms`."""
        chunking = dict(chunk_size=chunk_size, memory_budget=memory_budget, path=path)
        shard = self.local_shard(x, labels, **chunking)
        if self.own_loss:
            return self.loss_over(shard)
        norms, xn, w = shard.norms, shard.xn, shard.weight
        scale = self.row_scale(norms)
        cos_y = shard.cos_y.detach()  # for the state and the thresholds
        common = dict(
            bias=shard.bias, normalize=self.normalize, subcenters=self.subcenters, **chunking
        )
        if self.training and self.batch_scaled:
            with torch.no_grad():  # the non-target log-sum-exp at the current scale
                lse_old, _ = fused_margin_terms(xn, w, scale, labels, **common)
            self.update_scale(lse_old, cos_y)
            scale = self.row_scale(norms)
        if self.training:
            self._advance_state(cos_y, norms.detach())
        neg = self.negative_modulation(cos_y, norms.detach())
        lse_neg, z_y = fused_margin_terms(
            xn,
            w,
            scale,
            labels,
            neg_threshold=None if neg is None else neg[0].detach(),
            neg_t=0.0 if neg is None else float(neg[1]),
            **common,
        )
        target = scale * self.target(z_y, norms)
        return margin_softmax_loss(target, lse_neg)
