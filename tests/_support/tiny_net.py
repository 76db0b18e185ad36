"""A tiny embedding network for the tests of what embeds images (evaluation, ONNX export)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """(B, 3, H, W) -> (B, D): a conv, a PReLU, global pooling and a linear layer."""

    def __init__(self, embedding_size: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.PReLU(6)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.bn(self.conv(x)))).flatten(1))
