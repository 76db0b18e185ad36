"""The deterministic, resumable data order and the per-item seeds."""

import torch
from torch.utils.data import DataLoader, Dataset

from marginface.training.sampler import EpochBatchSampler, SeededItems


def _indices(sampler):
    return [[i for i, _ in batch] for batch in sampler]


def test_epochs_differ_and_repeat():
    a = _indices(EpochBatchSampler(20, 4, seed=1, epoch=0))
    assert len(a) == 5 and sorted(sum(a, [])) == list(range(20))
    assert a == _indices(EpochBatchSampler(20, 4, seed=1, epoch=0))
    assert a != _indices(EpochBatchSampler(20, 4, seed=1, epoch=1))
    assert a != _indices(EpochBatchSampler(20, 4, seed=2, epoch=0))


def test_start_batch_resumes_the_same_tail():
    full = list(EpochBatchSampler(22, 4, seed=0, epoch=3))
    tail = list(EpochBatchSampler(22, 4, seed=0, epoch=3, start_batch=2))
    assert len(full) == 5 and tail == full[2:] and len(EpochBatchSampler(22, 4, 0, 3, 2)) == 3


def test_ranks_split_the_epoch():
    r0 = _indices(EpochBatchSampler(21, 2, seed=0, epoch=0, rank=0, world_size=2))
    r1 = _indices(EpochBatchSampler(21, 2, seed=0, epoch=0, rank=1, world_size=2))
    assert len(r0) == len(r1) == 5
    assert not set(sum(r0, [])) & set(sum(r1, []))  # disjoint, 20 of the 21 items


class RandomItems(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.rand(3), i  # "augmentation" from torch's global RNG


def test_item_randomness_is_a_function_of_position():
    sampler = EpochBatchSampler(16, 4, seed=0, epoch=0)

    def load(workers):
        loader = DataLoader(
            SeededItems(RandomItems()),
            batch_sampler=sampler,
            num_workers=workers,
            generator=torch.Generator(),
        )
        return torch.cat([x for x, _ in loader])

    torch.manual_seed(123)
    state = torch.get_rng_state()
    main = load(0)
    assert torch.equal(torch.get_rng_state(), state)  # loading left the global RNG alone
    assert torch.equal(main, load(2))  # same with worker processes
