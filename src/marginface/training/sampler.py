"""Deterministic, resumable data order.

Epoch ``e`` visits the items in a permutation drawn from ``(seed, e)``; with ``world_size``
processes, rank ``r`` takes every ``world_size``-th item of it (the permutation is cut to a
multiple of ``world_size * batch_size`` so every rank makes the same number of steps). Each
item also gets its own seed from ``(seed, e, position)``, with which :class:`SeededItems` seeds
the random number generators before loading it: random augmentation (flips) is then a pure
function of the position, the same with 0 or 8 loader workers, before and after a resume.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info


def epoch_permutation(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of ``range(num_items)`` from (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_items)


class EpochBatchSampler:
    """Yields the batches of one epoch, as lists of ``(index, item_seed)``, from a given batch.

    Args:
        num_items: dataset size N.
        batch_size: items per batch (per process); incomplete batches are dropped.
        seed, epoch: which permutation.
        start_batch: first batch to yield (the position to resume from).
        rank, world_size: this process's share of the permutation.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        epoch: int,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch
        self.rank, self.world_size = rank, world_size

    @staticmethod
    def batches_per_epoch(num_items: int, batch_size: int, world_size: int = 1) -> int:
        return num_items // (batch_size * world_size)

    def __len__(self) -> int:
        n = self.batches_per_epoch(self.num_items, self.batch_size, self.world_size)
        return max(0, n - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        n_batches = self.batches_per_epoch(self.num_items, self.batch_size, self.world_size)
        perm = epoch_permutation(self.num_items, self.seed, self.epoch)
        perm = perm[: n_batches * self.batch_size * self.world_size]
        mine = perm[self.rank :: self.world_size]
        base = (self.seed * 1_000_003 + self.epoch) * 0x9E3779B1
        for b in range(self.start_batch, n_batches):
            rows = range(b * self.batch_size, (b + 1) * self.batch_size)
            yield [
                (int(mine[i]), (base + i * self.world_size + self.rank) % (2**63 - 1)) for i in rows
            ]


def _seed_all(seed: int) -> None:
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


class SeededItems(Dataset):
    """Wraps a map-style dataset: item ``(index, seed)`` is ``dataset[index]`` loaded with every
    RNG (torch, numpy, random) seeded by ``seed``. In the main process the RNG states are
    restored afterwards, so loading never disturbs the training's own random stream."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if get_worker_info() is not None:
            _seed_all(seed)
            return self.dataset[index]
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        try:
            _seed_all(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


def _ignore_sigint(worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops at a step boundary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def epoch_loader(dataset: Dataset, cfg: Any, env: Any, epoch: int, start_batch: int) -> DataLoader:
    """The batches of ``epoch`` from micro-batch ``start_batch`` on, for this process of
    ``env`` (``cfg``: ``batch_size``, ``seed``, ``num_workers``)."""
    sampler = EpochBatchSampler(
        len(dataset), cfg.batch_size, cfg.seed, epoch, start_batch, env.rank, env.world_size
    )
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=env.device.type == "cuda",
        worker_init_fn=_ignore_sigint if cfg.num_workers else None,
        generator=torch.Generator(),  # the loader never draws from the global RNG
    )
