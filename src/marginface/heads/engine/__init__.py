"""The loss engine: a head's loss over all classes without the (B, C) logits.

One public interface for the heads and :mod:`marginface.parallel`:

* :class:`Shard` and :func:`build_shard`: the batch, a shard of the class centres and the
  reductions over the processes that hold the others, what a head's ``loss_over`` reads;
* :func:`fused_margin_terms` (the non-target log-sum-exp and the target scores of the margin
  softmax), :func:`chunked_logsumexp` and :func:`margin_softmax_loss`;
* :func:`chunk_reduce`: any per-row reduction over blocks of classes (the heads whose loss the
  margin softmax cannot express), :func:`auto_chunk_size` the chunks of both;
* :func:`choose_path`: the chunked PyTorch path (:mod:`.torch_path`) or the Triton kernel
  (:mod:`.triton_path`); :func:`requested_path` reads the environment variable
  :data:`PATH_ENV`, and a model decides its path once (``MarginHead.loss(path=...)``,
  ``PartialFC(path=...)``).
"""

from marginface.heads.engine.chunking import auto_chunk_size, chunk_reduce, masked_fill_target
from marginface.heads.engine.path import (
    PATH_ENV,
    PATHS,
    TRITON_DTYPES,
    choose_path,
    requested_path,
    triton_available,
)
from marginface.heads.engine.shard import Shard, build_shard, target_scores
from marginface.heads.engine.terms import (
    chunked_logsumexp,
    fused_margin_terms,
    margin_softmax_loss,
)

__all__ = [
    "PATHS",
    "PATH_ENV",
    "TRITON_DTYPES",
    "Shard",
    "auto_chunk_size",
    "build_shard",
    "choose_path",
    "chunk_reduce",
    "chunked_logsumexp",
    "fused_margin_terms",
    "margin_softmax_loss",
    "masked_fill_target",
    "requested_path",
    "target_scores",
    "triton_available",
]
