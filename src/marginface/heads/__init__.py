"""Margin heads: drop-in classifiers that turn embeddings (B, D) into margin logits (B, C).

>>> import torch, marginface
>>> head = marginface.create_head("arcface", embedding_size=8, num_classes=5)
>>> x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
>>> head(x, y).shape
torch.Size([4, 5])
>>> bool(torch.allclose(head.loss(x, y), torch.nn.functional.cross_entropy(head(x, y), y)))
True
"""

from marginface.heads.adacos import AdaCos, adacos_scale
from marginface.heads.adaface import AdaFace
from marginface.heads.arcface import ArcFace, arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.binary import BinaryHead
from marginface.heads.combined import Combined
from marginface.heads.cosface import CosFace
from marginface.heads.curricularface import CurricularFace
from marginface.heads.elasticface import (
    ElasticFaceArc,
    ElasticFaceArcPlus,
    ElasticFaceCos,
    ElasticFaceCosPlus,
)
from marginface.heads.engine import (
    Shard,
    auto_chunk_size,
    choose_path,
    chunked_logsumexp,
    fused_margin_terms,
)
from marginface.heads.magface import MagFace, magface_lambda_bound
from marginface.heads.normface import NormFace
from marginface.heads.registry import (
    create_head,
    head_hparams,
    list_heads,
    register_head,
    register_variant,
)
from marginface.heads.softmax import Softmax
from marginface.heads.sphereface import SphereFace, sphere_psi
from marginface.heads.sphereface2 import SphereFace2
from marginface.heads.sphereface_r import SphereFaceR
from marginface.heads.subcenter import SubCenterArcFace
from marginface.heads.uniface import UniFace

__all__ = [
    "ArcFace",
    "BinaryHead",
    "Shard",
    "register_variant",
    "Combined",
    "CosFace",
    "MarginHead",
    "NormFace",
    "Softmax",
    "SphereFace",
    "arc_margin",
    "auto_chunk_size",
    "choose_path",
    "chunked_logsumexp",
    "fused_margin_terms",
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
    "AdaFace",
    "CurricularFace",
    "ElasticFaceArc",
    "ElasticFaceArcPlus",
    "ElasticFaceCos",
    "ElasticFaceCosPlus",
    "MagFace",
    "SphereFace2",
    "SphereFaceR",
    "SubCenterArcFace",
    "UniFace",
    "magface_lambda_bound",
    "AdaCos",
    "adacos_scale",
    "adacos",
    "adaface",
    "curricularface",
    "elasticface",
    "magface",
    "sphereface2",
    "sphereface_r",
    "subcenter",
    "uniface",
]
