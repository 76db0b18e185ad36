"""SphereFace-R (Liu, Wen et al., TPAMI 2022): SphereFace revived by gradient detachment.

Paper: "SphereFace Revived: Unifying Hyperspherical Face Recognition"; reference code
github.com/ydwen/opensphere (``model/head/spherefacer.py``, ``SphereFaceR_H`` with hard
feature normalisation, and ``config/train/vggface2_sfnet20_spherefacer.yml``).

SphereFace's multiplicative margin m * theta_y gives a target logit whose gradient is hard to
train with (hence SphereFace's lambda annealing).  SphereFace-R's "characteristic gradient
detachment" keeps the margin in the value of each logit but takes its gradient from the plain
cosine: logit = s * (c + sg(psi(theta) - c)), sg = stop-gradient.  So the decision boundary
is SphereFace's, and the gradient is NormFace's, re-weighted by the margin-bearing softmax.

Versions (the characteristic function psi of the target, eta of the others):

    =======  ===============================================  ===========================
    version  target psi(theta_y)                              other classes eta(theta_j)
    =======  ===============================================  ===========================
    v0       (-1)^k cos(m theta) - 2k, k = floor(m theta/pi)  cos theta_j
    v1       cos(min(m theta, pi))                            cos theta_j
    v2       cos theta_y                                      cos(theta_j / m)
    =======  ===============================================  ===========================

v2 (the official released SphereFace-R models) puts the margin on the non-target classes:
the boundary theta_j = m theta_y is the same as v0/v1's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginface.heads._math import monotone_cos, no_autocast
from marginface.heads.base import MarginHead
from marginface.heads.engine import Shard, masked_fill_target
from marginface.heads.registry import register_head

_VERSIONS = ("v0", "v1", "v2")


@register_head("sphereface_r")
class SphereFaceR(MarginHead):
    """SphereFace-R with hard feature normalisation (HFN): logits ``s * (c + sg(f(c) - c))``,
    f = psi on the target and eta on the other classes (see the module docstring).

    The loss is the cross-entropy of these logits; the official code multiplies it by
    ``lw / s`` (50 / 60), a constant factor left to the learning rate here.

    Args:
        s: scale (60, the official SphereFace-R (HFN, v2) config; the code's default is 30).
        m: multiplicative margin (1.4, same config).  version: "v0", "v1" or "v2" (v2).
    """

    loss_kind = "own"
    scale_policy = "fixed"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 60.0,
        m: float = 1.4,
        version: str = "v2",
    ) -> None:
        if version not in _VERSIONS:
            raise ValueError(f"version must be one of {_VERSIONS}, got {version!r}")
        if not m >= 1.0:
            raise ValueError(f"m must be >= 1 (a multiplicative margin), got {m}")
        super().__init__(embedding_size, num_classes, s=s)
        self.m, self.version = float(m), version

    @staticmethod
    def _detach_to(c: Tensor, value: Tensor) -> Tensor:
        return c + (value - c).detach()

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        """The target cosine: value psi(theta_y), gradient that of cos theta_y."""
        with torch.no_grad():
            c = cos_y.clamp(-1.0, 1.0)
            if self.version == "v2":
                value = c
            else:
                m_theta = self.m * torch.acos(c)
                if self.version == "v0":
                    value = monotone_cos(m_theta)
                else:
                    value = torch.cos(m_theta.clamp(max=math.pi))
        return self._detach_to(cos_y, value)

    def nontarget(self, z: Tensor) -> Tensor:
        """The other classes' cosines: value eta(theta), gradient that of cos theta."""
        if self.version != "v2":
            return z
        with torch.no_grad():
            value = torch.cos(torch.acos(z.clamp(-1.0, 1.0)) / self.m)
        return self._detach_to(z, value)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.version != "v2" or labels is None:
            return super().forward(embeddings, labels)
        self.check_inputs(embeddings, labels)
        labels = labels.long()
        with no_autocast(embeddings.device.type):
            x = embeddings.to(self.compute_dtype(embeddings))
            z = self.scores(x)
            target = self.s * self.target(z.gather(1, labels[:, None]).squeeze(1), x.norm(dim=1))
            logits = self.s * self.nontarget(z)
            return logits.scatter(1, labels[:, None], target[:, None])

    @property
    def own_loss(self) -> bool:
        """v2 changes the other classes' logits: its loss is :meth:`loss_over`'s (v0 and v1
        are the margin softmax of the hooks)."""
        return self.version == "v2"

    def loss_over(self, shard: Shard) -> Tensor:
        """The cross-entropy of the logits over the classes of ``shard`` (v2: the other
        classes' logits through :meth:`nontarget`)."""
        if self.version != "v2":
            return super().loss_over(shard)
        target = shard.own(self.s * self.target(shard.cos_y, shard.norms))
        lowest = torch.finfo(shard.xn.dtype).min

        def others(z: Tensor, c0: int, c1: int) -> Tensor:
            logits = masked_fill_target(self.s * self.nontarget(z), shard.labels, c0, lowest)
            return torch.logsumexp(logits, dim=1)

        lse = torch.logaddexp(shard.logsumexp_over_classes(others), target)
        return (lse - target).mean()
