"""NormFace (Wang et al., 2017): cosine logits s * cos(theta), no margin."""

from __future__ import annotations

from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("normface")
class NormFace(MarginHead):
    """All logits ``s * cos(theta_j)``: normalised features and centres, no margin.

    Args:
        s: scale (default 64).
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0) -> None:
        super().__init__(embedding_size, num_classes, s=s)
