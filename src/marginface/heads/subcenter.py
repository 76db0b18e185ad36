"""Sub-center ArcFace (Deng et al., ECCV 2020): K centres per class, max over them, then ArcFace.

Paper: "Sub-center ArcFace: Boosting Face Recognition by Large-scale Noisy Web Faces".
Each class j owns K sub-centres w_{j,1..K}; its cosine is ``c_j = max_k cos(x, w_{j,k})``
and ArcFace's margin goes on the target class's c_y.  Clean faces gather at one dominant
sub-centre per class; noisy ones at the others.  After training, the paper finds each
class's dominant sub-centre (the one most of its samples are nearest to), drops samples
farther than 75 degrees from it, keeps only the dominant sub-centres (K = 1), and
retrains on the cleaned data: :meth:`SubCenterArcFace.dominant_subcenters`,
:meth:`SubCenterArcFace.clean` and :meth:`SubCenterArcFace.collapse`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.heads._math import EPS
from marginface.heads.arcface import ArcFace, arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_head


@register_head("subcenter_arcface")
class SubCenterArcFace(MarginHead):
    """Target ``s * cos(theta_y + m)`` with ``cos theta_j = max_k cos(x, w_{j,k})``.

    The weight holds (num_classes * k, D) rows, class-major: row ``j * k + i`` is the i-th
    sub-centre of class j.  Forward and the fused loss take the max over the K sub-centres.

    Args:
        s: scale (default 64).
        m: additive angular margin in radians (default 0.5).
        k: sub-centres per class (default 3, the paper's choice).
        easy_margin: apply the margin only where cos(theta_y) > 0 (default False).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        k: int = 3,
        easy_margin: bool = False,
    ) -> None:
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k (sub-centres per class) must be a positive integer, got {k!r}")
        self.subcenters = int(k)
        super().__init__(embedding_size, num_classes, s=s)
        self.k = int(k)
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(cos_y, norms, m=self.m, easy_margin=self.easy_margin)

    @classmethod
    def margin_of(
        cls, cos_y: Tensor, norms: Tensor, *, m: float, easy_margin: bool, **params: object
    ) -> Tensor:
        return arc_margin(cos_y, m, easy_margin)

    # ------------------------------------------------------------------ noisy-data tools
    def _class_cosines(self, x: Tensor, labels: Tensor) -> Tensor:
        """(N, K) cosines between each embedding and the K sub-centres of its own class."""
        k = self.subcenters
        w = F.normalize(self.weight.detach().to(x.dtype), dim=1, eps=EPS)
        w = w.view(self.num_classes, k, -1)[labels]  # (N, K, D)
        return torch.einsum("nd,nkd->nk", F.normalize(x, dim=1, eps=EPS), w)

    def _batches(self, embeddings: Tensor, labels: Tensor, batch_size: int):
        self.check_inputs(embeddings, labels)
        dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
        for i in range(0, embeddings.shape[0], batch_size):
            x = embeddings[i : i + batch_size].detach().to(device=self.weight.device, dtype=dtype)
            y = labels[i : i + batch_size].to(self.weight.device).long()
            yield x, y, self._class_cosines(x, y)

    @torch.no_grad()
    def dominant_subcenters(
        self, embeddings: Tensor, labels: Tensor, batch_size: int = 65536
    ) -> Tensor:
        """(C,) int64: for each class, the sub-centre most of its samples are nearest to.

        Each sample votes for the nearest of its own class's K sub-centres; ties and classes
        without any sample go to the lowest index (0).  ``embeddings`` (N, D), ``labels``
        (N,) may be a whole dataset; they are processed ``batch_size`` rows at a time.
        """
        k = self.subcenters
        counts = torch.zeros(self.num_classes * k, dtype=torch.long, device=self.weight.device)
        for _, y, cos in self._batches(embeddings, labels, batch_size):
            nearest = cos.argmax(dim=1)
            counts += torch.bincount(y * k + nearest, minlength=self.num_classes * k)
        return counts.view(self.num_classes, k).argmax(dim=1)

    @torch.no_grad()
    def clean(
        self,
        embeddings: Tensor,
        labels: Tensor,
        threshold_deg: float = 75.0,
        dominant: Tensor | None = None,
        batch_size: int = 65536,
    ) -> Tensor:
        """Keep mask (N,) bool: True where the sample lies within ``threshold_deg`` degrees of
        its class's dominant sub-centre (the paper drops the others as noise; 75 degrees).

        ``dominant`` (C,) defaults to :meth:`dominant_subcenters` of the same data.
        """
        if not 0.0 <= threshold_deg <= 180.0:
            raise ValueError(f"threshold_deg must lie in [0, 180], got {threshold_deg}")
        if dominant is None:
            dominant = self.dominant_subcenters(embeddings, labels, batch_size)
        dominant = dominant.to(self.weight.device).long()
        limit = math.cos(math.radians(threshold_deg))
        keep = []
        for _, y, cos in self._batches(embeddings, labels, batch_size):
            c = cos.gather(1, dominant[y][:, None]).squeeze(1)
            keep.append(c >= limit)
        if not keep:
            return torch.zeros(0, dtype=torch.bool, device=self.weight.device)
        return torch.cat(keep)

    @torch.no_grad()
    def collapse(self, dominant: Tensor) -> ArcFace:
        """A plain :class:`ArcFace` head (K = 1) holding each class's dominant sub-centre.

        ``dominant`` (C,) int: e.g. :meth:`dominant_subcenters` of the training data.  The
        new head has this head's s, m, easy_margin, dtype and device.
        """
        dominant = torch.as_tensor(dominant, device=self.weight.device).long()
        if dominant.shape != (self.num_classes,):
            raise ValueError(
                f"dominant must have shape ({self.num_classes},), got {tuple(dominant.shape)}"
            )
        if dominant.numel() and (int(dominant.min()) < 0 or int(dominant.max()) >= self.k):
            raise ValueError(f"dominant sub-centre indices must lie in [0, {self.k})")
        head = ArcFace(
            self.embedding_size,
            self.num_classes,
            s=self.s,
            m=self.m,
            easy_margin=self.easy_margin,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        rows = torch.arange(self.num_classes, device=dominant.device) * self.k + dominant
        head.weight.copy_(self.weight[rows])
        head.train(self.training)
        return head
