"""Which heads PartialFC can shard, and the head-specific extra terms it must add.

PartialFC computes the margin softmax of :class:`marginface.heads.MarginHead` from the
head's hooks (row_scale, margin, negative_modulation, update_state, subcenters, bias), so
every head that keeps the base class's ``loss`` works.  Heads that override ``loss`` work
when the override only adds a term of the embeddings (MagFace's magnitude regulariser) or
falls back to the base loss (SphereFace-R v0 / v1); the others are refused with a
ValueError that says why.
"""

from __future__ import annotations

from torch import Tensor

from marginface.heads.base import MarginHead


def check_supported(head: MarginHead) -> None:
    """ValueError when PartialFC cannot compute ``head``'s loss from its hooks."""
    cls = type(head)
    if cls.loss is MarginHead.loss:
        return
    name = getattr(head, "head_name", cls.__name__)
    if name == "magface":
        return
    if name == "sphereface_r" and getattr(head, "version", None) != "v2":
        return
    raise ValueError(
        f"PartialFC cannot shard head {name!r}: it overrides loss() with an objective the "
        "margin-softmax hooks do not express (a modified non-target logit, or per-class "
        "binary losses); supported: every head that keeps MarginHead.loss, magface, and "
        "sphereface_r with version v0 / v1"
    )


def extra_loss(head: MarginHead, norms: Tensor) -> Tensor | None:
    """A term of the embeddings added to the cross-entropy, (scalar) or None.

    MagFace: ``lambda_g * mean(g(|x|))`` over the global batch.
    """
    if getattr(head, "head_name", None) == "magface":
        return head.lambda_g * head.regularizer(norms).mean()
    return None
