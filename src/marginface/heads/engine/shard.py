"""A loss over all classes, computed one shard of classes at a time: what a head's loss reads.

:class:`marginface.parallel.PartialFC` spreads the classes over the processes of a group. On
each process it builds a :class:`Shard`: the global batch (every process's embeddings), the
centres of this process's classes, the target score of every row, and four reductions over
the processes. A head's :meth:`~marginface.heads.MarginHead.loss_over` computes its loss from
a shard alone, so Partial FC needs to know nothing of the head. :meth:`MarginHead.loss` of a
head with a loss of its own builds the one-process shard of all classes (the reductions are
then identities), so the head's loss is written once and serves both. :func:`build_shard` builds
both.

The reductions keep gradients exact: :meth:`Shard.own` counts a per-row term of the target
on the process that holds the row's class only, :meth:`Shard.sum` and :meth:`Shard.logsumexp`
combine per-row partial results of every process, :meth:`Shard.replicated` counts a term
that every process computes alike once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.heads._math import EPS
from marginface.heads.engine.chunking import BlockFn, chunk_reduce
from marginface.heads.engine.terms import chunked_logsumexp, fused_margin_terms


def target_scores(
    xn: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    k: int = 1,
    normalize: bool = True,
    gather: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """z_{i, y_i} of rows ``xn`` (n, D) for ``labels`` (n,) into ``weight``: (n,), as a head
    computes it (max over the K sub-centres; ``xn`` already normalised for cosine heads).
    ``gather(weight, rows)`` picks the target rows (default: indexing)."""
    rows = (labels[:, None] * k + torch.arange(k, device=labels.device)).reshape(-1)
    picked = weight[rows] if gather is None else gather(weight, rows)
    w = picked.view(labels.shape[0], k, weight.shape[1])
    if normalize:
        z = torch.einsum("bd,bkd->bk", xn, F.normalize(w, dim=2, eps=EPS))
    else:
        z = torch.einsum("bd,bkd->bk", xn, w)
        if bias is not None:
            z = z + bias[rows].view(labels.shape[0], k)
    return z.amax(dim=1)


@dataclass(eq=False)
class Shard:
    """One process's classes and the global batch of N rows; this class's reductions are
    those of a single process holding all classes (identities).

    Attributes:
        x: (N, D) embeddings in the compute dtype (float32, float64 for float64 inputs).
        norms: (N,) their norms ‖x_i‖.
        xn: (N, D) the embeddings as the scores use them: normalised for cosine heads, ``x``
            where the head's ``normalize`` is False.
        weight: (n * K, D) the centres of this shard's n classes (of the sampled ones in a
            sampled step), in the compute dtype, not normalised.
        bias: (n,) their per-class score bias (plain softmax), or None.
        labels: (N,) int64: the class of each row among this shard's n, -1 where the row's
            class is held elsewhere.
        cos_y: (N,) the target score of every row (cosine, max over sub-centres), known on
            every process, with its gradient on the process that holds the class.
        num_classes: C, the classes of all shards.
        subcenters: K; normalize: as the head's.
        chunk_size, memory_budget: the chunking of the per-block reductions.
        path: the implementation of the margin-softmax terms
            (:func:`marginface.heads.engine.choose_path`).
    """

    x: Tensor
    norms: Tensor
    xn: Tensor
    weight: Tensor
    bias: Tensor | None
    labels: Tensor
    cos_y: Tensor
    num_classes: int
    subcenters: int = 1
    normalize: bool = True
    chunk_size: int | None = None
    memory_budget: int | None = None
    path: str = "auto"

    @property
    def owned(self) -> Tensor:
        """(N,) bool: the rows whose class this shard holds."""
        return self.labels >= 0

    # ---------------------------------------------------- reductions over the processes
    def own(self, t: Tensor) -> Tensor:
        """A per-row term computed on every process from values all of them know (the
        target's): its gradient counted on the process holding the row's class only."""
        return t

    def sum(self, local: Tensor) -> Tensor:
        """The sum over the processes of per-row partial sums (N,)."""
        return local

    def logsumexp(self, local: Tensor) -> Tensor:
        """The log-sum-exp over the processes of per-row partial log-sum-exps (N,)."""
        return local

    def replicated(self, t: Tensor) -> Tensor:
        """A term every process computes alike (of the embeddings alone): counted once."""
        return t

    # ------------------------------------------------ per-row reductions over all classes
    def _blocks(self, fn: BlockFn) -> Tensor:
        return chunk_reduce(
            fn, self.xn, self.weight, chunk_size=self.chunk_size, memory_budget=self.memory_budget
        )

    def sum_over_classes(self, fn: BlockFn) -> Tensor:
        """(N,) the sum over all classes (all shards) of ``fn``, a per-row reduction of each
        block of cosines ``fn(cos (N, c1 - c0), c0, c1) -> (N,)`` (columns c0 .. c1 - 1 of
        this shard, whose target column, if any, is where ``labels == c``)."""
        empty = not self.weight.shape[0]
        local = self.xn.new_zeros(self.xn.shape[0]) if empty else self._blocks(fn).sum(dim=1)
        return self.sum(local)

    def logsumexp_over_classes(self, fn: BlockFn) -> Tensor:
        """(N,) the log-sum-exp over all classes of ``fn``'s per-block log-sum-exps."""
        if self.weight.shape[0]:
            local = torch.logsumexp(self._blocks(fn), dim=1)
        else:
            local = self.xn.new_full((self.xn.shape[0],), -math.inf)
        return self.logsumexp(local)

    def softmax_logsumexp(
        self,
        scale: Tensor,
        target: Tensor | None = None,
        negatives: tuple[Tensor, float] | None = None,
    ) -> Tensor:
        """(N,) the log-sum-exp over all classes of the margin-softmax logits
        ``scale_i * g(z_ij)`` (:mod:`marginface.heads.engine.terms`): of the non-target ones without
        ``target``, else with ``target`` (N,) in each row's target column. ``negatives``:
        CurricularFace's (threshold (N,), t) modulation of hard negatives."""
        chunking: dict[str, Any] = dict(
            bias=self.bias,
            normalize=self.normalize,
            subcenters=self.subcenters,
            chunk_size=self.chunk_size,
            memory_budget=self.memory_budget,
            path=self.path,
        )
        if not self.weight.shape[0]:  # an empty shard (fewer classes than processes)
            local = self.xn.new_full((self.xn.shape[0],), -math.inf)
        elif target is None:
            local, _ = fused_margin_terms(self.xn, self.weight, scale, self.labels, **chunking)
        else:
            local = chunked_logsumexp(
                self.xn,
                self.weight,
                scale,
                target,
                self.labels,
                neg_threshold=None if negatives is None else negatives[0].detach(),
                neg_t=0.0 if negatives is None else float(negatives[1]),
                **chunking,
            )
        return self.logsumexp(local)


#: targets(xn) -> (labels, cos_y): each row's label among the shard's classes (-1 where
#: another process holds it) and every row's target score
Targets = Callable[[Tensor], tuple[Tensor, Tensor]]


def build_shard(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    *,
    num_classes: int,
    subcenters: int = 1,
    normalize: bool = True,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    path: str = "auto",
    targets: Targets | None = None,
    kind: type[Shard] = Shard,
    **fields: Any,
) -> Shard:
    """The :class:`Shard` (or subclass ``kind`` with its extra ``fields``) of the batch ``x``
    (N, D) in the compute dtype over the centres ``weight`` and ``bias`` (in that dtype).

    Without ``targets``, the shard holds all classes: ``labels`` (N,) int64 are the rows'
    classes and the target scores are :func:`target_scores`; ``targets(xn)`` gives both where
    the rows' classes are spread over processes (Partial FC)."""
    xn = F.normalize(x, dim=1, eps=EPS) if normalize else x
    if targets is None:
        cos_y = target_scores(xn, weight, bias, labels, subcenters, normalize)
    else:
        labels, cos_y = targets(xn)
    return kind(
        x=x,
        norms=x.norm(dim=1),
        xn=xn,
        weight=weight,
        bias=bias,
        labels=labels,
        cos_y=cos_y,
        num_classes=num_classes,
        subcenters=subcenters,
        normalize=normalize,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        path=path,
        **fields,
    )
