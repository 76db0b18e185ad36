"""Suite-wide settings: the tests use tiny tensors, for which one intra-op thread is fastest
(and several threads contend badly when the machine is busy)."""

import torch

torch.set_num_threads(1)
