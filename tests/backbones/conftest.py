"""Backbone tests run single-threaded (tiny tensors: threads only add waiting on shared cores)."""

import torch

torch.set_num_threads(1)
