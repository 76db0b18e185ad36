"""Model-parallel, sampled classifiers over ``torch.distributed`` (Partial FC).

``PartialFC(head, embedding_size, num_classes, sample_rate, process_group)`` takes any head of
:mod:`marginface.heads` (an instance or its registered name) and asks it for its loss over the
classes each process holds; it knows no head by name. Examples, run by the tests: docs/parallel.md.

Under torchrun, after ``torch.distributed.init_process_group``, the same call shards the
classes over the ranks; see docs/parallel.md.
"""

from marginface.parallel.comm import LOCAL, all_gather_with_grad, global_logsumexp
from marginface.parallel.partial_fc import PartialFC
from marginface.parallel.sampling import num_samples, sample_classes
from marginface.parallel.sharding import seeded_xavier_rows, shard_range, shard_ranges
from marginface.parallel.state import (
    full_state_to_head,
    gather_full_state,
    reshard_state_dicts,
    shard_full_state,
)

__all__ = [
    "LOCAL",
    "PartialFC",
    "all_gather_with_grad",
    "full_state_to_head",
    "gather_full_state",
    "global_logsumexp",
    "num_samples",
    "reshard_state_dicts",
    "sample_classes",
    "seeded_xavier_rows",
    "shard_full_state",
    "shard_range",
    "shard_ranges",
]
