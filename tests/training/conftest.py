"""The training tests run torch on one thread: on the shared 2-core machines OpenMP threads
waiting on each other make these tiny models 10-20x slower. (The ``cli`` fixture, ``marginface
train ARGS``, is in tests/conftest.py.)"""

import torch

torch.set_num_threads(1)
