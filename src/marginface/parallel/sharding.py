"""Which classes each rank owns, and a class-centre initialisation independent of the sharding."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: rows per block of the seeded initialisation (each block has its own generator)
INIT_BLOCK_ROWS = 4096


def shard_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """Classes ``[start, end)`` of ``rank``: contiguous, sizes differ by at most one.

    The first ``num_classes % world_size`` ranks hold one class more; with fewer classes
    than ranks the last ranks hold none (an empty range).
    """
    if world_size <= 0 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got rank {rank}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_ranges(num_classes: int, world_size: int) -> list[tuple[int, int]]:
    """:func:`shard_range` of every rank, in rank order."""
    return [shard_range(num_classes, world_size, r) for r in range(world_size)]


def seeded_xavier_rows(
    row_start: int,
    row_end: int,
    total_rows: int,
    width: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Rows ``[row_start, row_end)`` of a (total_rows, width) xavier-uniform matrix.

    The full matrix is a fixed function of ``seed`` (blocks of :data:`INIT_BLOCK_ROWS` rows,
    each drawn from its own generator), so every sharding of the same classes starts from
    the same centres, and a rank draws only the blocks that overlap its rows.
    Bound: sqrt(6 / (width + total_rows)), as ``nn.init.xavier_uniform_`` for that matrix.
    """
    bound = math.sqrt(6.0 / (width + total_rows))
    out = torch.empty(row_end - row_start, width, dtype=dtype)
    first, last = row_start // INIT_BLOCK_ROWS, (row_end - 1) // INIT_BLOCK_ROWS
    for block in range(first, last + 1) if row_end > row_start else ():
        b0 = block * INIT_BLOCK_ROWS
        b1 = min(total_rows, b0 + INIT_BLOCK_ROWS)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + block)
        vals = torch.rand(b1 - b0, width, generator=gen, dtype=dtype).mul_(2 * bound).sub_(bound)
        lo, hi = max(b0, row_start), min(b1, row_end)
        out[lo - row_start : hi - row_start] = vals[lo - b0 : hi - b0]
    return out
