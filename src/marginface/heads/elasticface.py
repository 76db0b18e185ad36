"""ElasticFace (Boutros et al., CVPRW 2022): a margin drawn per sample from N(m, sigma).

Paper: "ElasticFace: Elastic Margin Loss for Deep Face Recognition"; reference code
github.com/fdbtrs/ElasticFace (``utils/losses.py``, ``config/config.py``).

Four heads: ``elasticface_arc`` (target ``s cos(theta_y + m_i)``), ``elasticface_cos``
(target ``s (cos theta_y - m_i)``) and their "+" variants, which sort the batch's drawn
margins so that the harder a sample (the lower its target cosine), the larger its margin.

About the "+" assignment: the reference sorts the target cosines in descending order
(``order``: easiest first) and the drawn margins in ascending order, then gives row i the
margin ``sorted_margin[order[i]]``.  That gathers with the sort permutation where its
inverse is needed: it is right only when the permutation is its own inverse (e.g. already
sorted batches).  In general the hardest sample does not get the largest margin (e.g.
cosines (0.1, 0.9, 0.5) get margins (middle, largest, smallest)).  Here row ``order[r]``
gets ``sorted_margin[r]``, so the margins are in exactly the reverse order of the target
cosines, which is the paper's stated intent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from marginface.heads.arcface import arc_margin
from marginface.heads.base import MarginHead
from marginface.heads.registry import register_variant


def assign_sorted(margins: Tensor, cos_y: Tensor) -> Tensor:
    """Permute ``margins`` (B,) so that a lower ``cos_y`` gets a larger margin (ElasticFace+).

    The margins end in exactly the reverse rank order of the target cosines: the row with
    the smallest cosine gets the largest margin, and so on (ties keep their row order).
    """
    order = torch.argsort(cos_y.detach(), stable=True)  # hardest first
    out = torch.empty_like(margins)
    out[order] = torch.sort(margins, descending=True).values
    return out


class ElasticFace(MarginHead):
    """ElasticFace: the margin of each sample drawn from N(m, std); registered as the four
    variants below (``kind`` "arc" or "cos", ``plus`` for the sorted "+" assignment).

    In training mode each labelled call draws B margins from N(m, std) with a CPU
    ``torch.Generator`` whose full state is the buffer ``rng_state`` (saved in
    ``state_dict``, so a restored head draws the same margins as the original would have),
    sorts them for the "+" variants, and uses them for that call.  In eval mode the margin
    is the mean m (no randomness).  The margins of the last training call are kept in
    ``last_margins`` (not saved).
    """

    state = "steps"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        std: float = 0.05,
        seed: int | None = None,
        kind: str = "arc",
        plus: bool = False,
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std}")
        if kind not in ("arc", "cos"):
            raise ValueError(f"kind must be 'arc' or 'cos', got {kind!r}")
        self.m, self.std = float(m), float(std)
        self.seed = None if seed is None else int(seed)
        self.kind, self.plus = kind, bool(plus)
        g = torch.Generator()
        g.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else int(seed))
        self.register_buffer("rng_state", g.get_state())
        self.last_margins: Tensor | None = None
        self._pending: Tensor | None = None

    def draw_margins(self, n: int) -> Tensor:
        """Draw n margins from N(m, std) (float64, CPU), advancing ``rng_state``."""
        g = torch.Generator()
        g.set_state(self.rng_state.detach().cpu())
        out = torch.normal(self.m, self.std, (n,), generator=g, dtype=torch.float64)
        self.rng_state.copy_(g.get_state().to(self.rng_state.device))
        return out

    def update_state(self, cos_y: Tensor, norms: Tensor) -> None:
        margins = self.draw_margins(cos_y.shape[0]).to(device=cos_y.device, dtype=cos_y.dtype)
        if self.plus:
            margins = assign_sorted(margins, cos_y)
        self._pending = margins
        self.last_margins = margins

    def sample_margins(self, cos_y: Tensor) -> Tensor:
        """The margins of this call: drawn ones in training mode, else m; (B,)."""
        pending, self._pending = self._pending, None
        if self.training and pending is not None and pending.shape == cos_y.shape:
            return pending.to(cos_y.dtype)
        return torch.full_like(cos_y, self.m)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
        return self.margin_of(
            cos_y, norms, m=self.m, kind=self.kind, margins=self.sample_margins(cos_y)
        )

    @classmethod
    def margin_of(
        cls,
        cos_y: Tensor,
        norms: Tensor,
        *,
        m: float,
        kind: str,
        margins: Tensor | None = None,
        **params: object,
    ) -> Tensor:
        """With ``margins`` (B,) the margins of the call (:meth:`sample_margins`); without,
        the mean m (eval mode, a new head)."""
        mi = torch.full_like(cos_y, m) if margins is None else margins
        return arc_margin(cos_y, mi) if kind == "arc" else cos_y - mi


ElasticFaceArc = register_variant(
    "elasticface_arc",
    ElasticFace,
    "ElasticFaceArc",
    fixed={"kind": "arc", "plus": False},
    doc="""Target ``s * cos(theta_y + m_i)``, m_i ~ N(m, std) per sample; others ``s * cos``.

    Where theta_y + m_i > pi, ArcFace's fallback ``cos - m_i sin m_i`` keeps the target
    falling (the reference has no fallback).  Args: s (64), m (0.5), std (0.05), seed.
    """,
)
ElasticFaceArcPlus = register_variant(
    "elasticface_arc_plus",
    ElasticFace,
    "ElasticFaceArcPlus",
    fixed={"kind": "arc", "plus": True},
    std=0.0175,
    doc="""ElasticFace-Arc+: as ``elasticface_arc``, the drawn margins sorted so that lower
    target cosines get larger margins.  Args: s (64), m (0.5), std (0.0175, the reference
    config for Arc+), seed.""",
)
ElasticFaceCos = register_variant(
    "elasticface_cos",
    ElasticFace,
    "ElasticFaceCos",
    fixed={"kind": "cos", "plus": False},
    m=0.35,
    doc="""Target ``s * (cos theta_y - m_i)``, m_i ~ N(m, std) per sample; others ``s * cos``.
    Args: s (64), m (0.35), std (0.05), seed.""",
)
ElasticFaceCosPlus = register_variant(
    "elasticface_cos_plus",
    ElasticFace,
    "ElasticFaceCosPlus",
    fixed={"kind": "cos", "plus": True},
    m=0.35,
    std=0.02,
    doc="""ElasticFace-Cos+: as ``elasticface_cos``, the drawn margins sorted so that lower
    target cosines get larger margins.  Args: s (64), m (0.35), std (0.02, the reference
    config for Cos+), seed.""",
)
