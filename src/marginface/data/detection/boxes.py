"""Boxes for face detection, in torch: overlap and greedy non-maximum suppression (NMS).

A box is ``(x1, y1, x2, y2)`` in pixel-edge coordinates (the box covers ``x1 <= x < x2``), so
its area is ``(x2 - x1) * (y2 - y1)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def box_areas(boxes: Tensor) -> Tensor:
    """Areas (N,) of boxes (N, 4); an inverted box has area 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_overlap(a: Tensor, b: Tensor, mode: str = "union") -> Tensor:
    """Overlap (N, M) of boxes ``a`` (N, 4) with boxes ``b`` (M, 4).

    ``mode="union"``: intersection over union (IoU). ``mode="min"``: intersection over the
    smaller area (MTCNN's last stage uses it, so a box inside a bigger one is suppressed).
    """
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a, area_b = box_areas(a)[:, None], box_areas(b)[None, :]
    if mode == "union":
        denominator = area_a + area_b - inter
    elif mode == "min":
        denominator = torch.minimum(area_a, area_b)
    else:
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    return inter / denominator.clamp(min=torch.finfo(inter.dtype).tiny)


def nms(
    boxes: Tensor, scores: Tensor, threshold: float, mode: str = "union", block: int = 2048
) -> Tensor:
    """Greedy NMS: indices (K,) of the kept boxes, highest score first.

    Boxes are visited in decreasing score (ties: lower index first); a box is kept unless a
    kept box overlaps it by more than ``threshold``. The overlaps are computed on the boxes'
    device ``block`` rows at a time, so memory stays ``block * N`` booleans.
    """
    n = len(boxes)
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    ordered = boxes[order]
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for start in range(0, n, block):
        if suppressed[start : start + block].all():
            continue
        rows = (box_overlap(ordered[start : start + block], ordered, mode) > threshold).cpu()
        rows = rows.numpy()
        for r in range(len(rows)):
            i = start + r
            if suppressed[i]:
                continue
            keep.append(i)
            suppressed |= rows[r]
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float, mode: str = "union"
) -> Tensor:
    """NMS within each group (e.g. each image of a batch) at once: the boxes of different
    groups are shifted apart so that they never overlap. Indices (K,), best first."""
    if len(boxes) == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    span = (boxes.max() - boxes.min()).clamp(min=0) + 1
    shifted = boxes + (groups.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, threshold, mode)
