"""Which heads PartialFC can shard, and the head-specific parts of their sharded loss.

PartialFC computes the margin softmax of :class:`marginface.heads.MarginHead` from the
head's hooks (row_scale, margin, negative_modulation, update_state, subcenters, bias), so
every head that keeps the base class's ``loss`` works.  Heads that override ``loss``:

* ``magface``: the base loss plus a term of the embeddings (:func:`extra_loss`);
* ``sphereface_r`` v0 / v1: the base loss;
* ``sphereface_r`` v2 (a modified non-target logit), ``sphereface2`` and ``uniface``
  (per-class binary losses): :func:`custom_loss`, which needs only per-row sums or
  log-sum-exps over the classes, so each rank reduces over its shard and an all-reduce
  combines them.

Any other head that overrides ``loss`` is refused with a ValueError.

``adacos``: its fixed scale depends on the number of classes, so a head built by name gets
the value for all C (:func:`global_hparams`), not for its shard.  The dynamic scale needs
the non-target log-sum-exp of every row over all classes, which PartialFC combines over the
ranks like the loss's; with sampling (sample_rate < 1) only the sampled classes would enter
it, so dynamic AdaCos with sampling is refused.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads._chunked import chunk_reduce, masked_fill_target, softplus
from marginface.heads.base import MarginHead
from marginface.parallel.comm import GroupInfo, all_reduce_sum_partial, global_logsumexp

#: heads whose loss custom_loss computes
CUSTOM = ("sphereface_r_v2", "sphereface2", "uniface")


def custom_kind(head: MarginHead) -> str | None:
    """ "sphereface_r_v2", "sphereface2", "uniface", or None for the margin softmax."""
    name = getattr(head, "head_name", None)
    if name == "sphereface_r" and getattr(head, "version", None) == "v2":
        return "sphereface_r_v2"
    return name if name in ("sphereface2", "uniface") else None


def check_supported(head: MarginHead, sample_rate: float = 1.0) -> None:
    """ValueError when PartialFC cannot compute ``head``'s loss."""
    cls = type(head)
    name = getattr(head, "head_name", cls.__name__)
    if head.batch_scaled and sample_rate < 1.0:
        raise ValueError(
            f"PartialFC cannot sample classes (sample_rate={sample_rate}) for head {name!r} "
            "with a dynamic scale: the scale's sum over the non-target classes would cover "
            "only the sampled ones; use sample_rate=1 or the fixed scale (dynamic=False)"
        )
    if cls.loss is MarginHead.loss or name in ("magface", "sphereface_r", "sphereface2", "uniface"):
        return
    raise ValueError(
        f"PartialFC cannot shard head {name!r}: it overrides loss() with an objective that "
        "PartialFC does not know; supported: every head that keeps MarginHead.loss, magface, "
        "sphereface_r, sphereface2 and uniface"
    )


def global_hparams(name: str, hparams: dict, num_classes: int) -> dict:
    """``hparams`` with the defaults that depend on the number of classes fixed to their value
    for all ``num_classes`` (each rank builds its head for its shard's count)."""
    if name == "adacos" and hparams.get("s") is None:
        from marginface.heads.adacos import adacos_scale

        return {**hparams, "s": adacos_scale(num_classes)}
    return hparams


def init_replicated(head: MarginHead, num_classes: int) -> None:
    """Set the replicated tensors whose initial value depends on the number of classes
    (the shard head was built for its shard's count)."""
    name = getattr(head, "head_name", None)
    with torch.no_grad():
        if name == "sphereface2":
            shard, head.num_classes = head.num_classes, num_classes
            head.bias.fill_(head.initial_bias())
            head.num_classes = shard
        elif name == "uniface":
            head.bias.fill_(math.log(10.0 * num_classes))


def extra_loss(head: MarginHead, norms: Tensor) -> Tensor | None:
    """A term of the embeddings added to the cross-entropy, (scalar) or None.

    MagFace: ``lambda_g * mean(g(|x|))`` over the global batch.
    """
    if getattr(head, "head_name", None) == "magface":
        return head.lambda_g * head.regularizer(norms).mean()
    return None


def custom_loss(
    kind: str,
    head: MarginHead,
    xn: Tensor,
    weight: Tensor,
    cos_y: Tensor,
    norms: Tensor,
    owned: Tensor,
    labels: Tensor,
    info: GroupInfo,
    chunk_size: int | None,
    memory_budget: int | None,
) -> Tensor:
    """The global-batch loss of SphereFace-R v2, SphereFace2 or UniFace, this rank's share.

    Args:
        xn: (N, D) normalised global batch; weight: (n, D) this rank's (sampled) centres.
        cos_y: (N,) target cosines of every row (gradient on the owning rank's rows only).
        owned: (N,) bool, rows whose class is on this rank; labels: (N,) local class or -1.

    Per-row terms of the target are counted on the owning rank (``torch.where`` with their
    detached value elsewhere); per-class sums / log-sum-exps are reduced over the shard and
    combined over the ranks with backward passes that keep each rank's share.
    """
    n = xn.shape[0]

    def own(t: Tensor) -> Tensor:
        return torch.where(owned, t, t.detach())

    def reduce(fn) -> Tensor:  # (N, blocks) over this shard's classes
        return chunk_reduce(fn, xn, weight, chunk_size=chunk_size, memory_budget=memory_budget)

    if kind == "sphereface_r_v2":
        s = head.s
        target = own(s * head.target(cos_y, norms))
        lowest = torch.finfo(xn.dtype).min

        def block(z: Tensor, c0: int, c1: int) -> Tensor:
            return torch.logsumexp(masked_fill_target(s * head.nontarget(z), labels, c0, lowest), 1)

        local = (
            torch.logsumexp(reduce(block), dim=1)
            if weight.shape[0]
            else xn.new_full((n,), float("-inf"))
        )
        lse = torch.logaddexp(global_logsumexp(local, info), target)
        return (lse - target).mean()

    if kind == "sphereface2":
        r, b, lamb = head.r, head.bias.to(xn.dtype), head.lamb

        def block(z: Tensor, c0: int, c1: int) -> Tensor:
            return softplus(r * head.negative(z) + b).sum(dim=1)

        pos, neg_y = r * head.positive(cos_y) + b, r * head.negative(cos_y) + b
        target_terms = own(lamb * softplus(-pos) - (1.0 - lamb) * softplus(neg_y))
        scale_out, weight_neg = head.loss_weight / r, 1.0 - lamb
    elif kind == "uniface":
        s, b, lamb = head.s, head.bias.to(xn.dtype), head.lamb

        def block(z: Tensor, c0: int, c1: int) -> Tensor:
            return softplus(head._c(s * z - b)).sum(dim=1)

        pos, neg_y = head._c(s * (cos_y - head.m) - b), head._c(s * cos_y - b)
        target_terms = own(softplus(-pos) - lamb * softplus(neg_y))
        scale_out, weight_neg = 1.0, lamb
    else:
        raise ValueError(f"unknown custom loss {kind!r}")
    local = reduce(block).sum(dim=1) if weight.shape[0] else xn.new_zeros(n)
    total = all_reduce_sum_partial(local, info)
    return scale_out * (target_terms + weight_neg * total).mean()
