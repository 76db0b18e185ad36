"""Margin heads: drop-in classifiers that turn embeddings (B, D) into margin logits (B, C).

    >>> import torch, marginface
    >>> head = marginface.create_head("arcface", embedding_size=8, num_classes=5)
    >>> x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    >>> head(x, y).shape
    torch.Size([4, 5])
    >>> bool(torch.allclose(head.loss(x, y), torch.nn.functional.cross_entropy(head(x, y), y)))
    True
"""

from marginface.heads import arcface, combined, cosface, normface, softmax, sphereface
from marginface.heads.arcface import ArcFace, arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.combined import Combined
from marginface.heads.cosface import CosFace
from marginface.heads.fused import auto_chunk_size, chunked_logsumexp
from marginface.heads.normface import NormFace
from marginface.heads.registry import create_head, head_hparams, list_heads, register_head
from marginface.heads.softmax import Softmax
from marginface.heads.sphereface import SphereFace, sphere_psi

__all__ = [
    "ArcFace",
    "Combined",
    "CosFace",
    "MarginHead",
    "NormFace",
    "Softmax",
    "SphereFace",
    "arc_margin",
    "auto_chunk_size",
    "chunked_logsumexp",
    "create_head",
    "head_hparams",
    "list_heads",
    "register_head",
    "sphere_psi",
    "arcface",
    "combined",
    "cosface",
    "normface",
    "softmax",
    "sphereface",
]
