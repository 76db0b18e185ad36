"""A small, fast CNN for CPU work and tests (not a published architecture).

Four stages of (3x3 conv stride 2, 3x3 conv) with BatchNorm + PReLU, widths 32-64-128-256
(times ``width``), global average pooling, then a linear layer and BatchNorm1d to the
embedding. About 1.2M parameters and 0.1 GMACs at 112x112; any input side >= 8 works.

Shapes: (B, 3, H, W) -> (B, D).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.backbones._common import check_images
from marginface.backbones.registry import register_backbone
from marginface.checks import check_positive_int


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.PReLU(cout),
    ]


class SmallCNN(nn.Module):
    """Small CNN: 4 stride-2 stages, global average pooling, linear + BatchNorm1d embedding.

    Args:
        embedding_size: width D of the embedding.
        width: channel multiplier (widths 32w, 64w, 128w, 256w).
        dropout: dropout probability before the linear layer.
        input_size: accepted for a uniform interface; the network works at any H, W >= 8.
    """

    def __init__(
        self,
        embedding_size: int = 512,
        width: int = 1,
        dropout: float = 0.0,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(width, "small_cnn: width")
        if input_size is not None and input_size < 8:
            raise ValueError(f"small_cnn: input_size must be >= 8, got {input_size}")
        widths = [32 * width, 64 * width, 128 * width, 256 * width]
        layers: list[nn.Module] = []
        cin = 3
        for c in widths:
            layers += _conv(cin, c, 2) + _conv(c, c, 1)
            cin = c
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B, D) embeddings (not normalised)."""
        check_images(x, "small_cnn")
        if min(x.shape[2], x.shape[3]) < 8:
            raise ValueError(f"small_cnn needs inputs of at least 8x8, got {tuple(x.shape)}")
        x = self.body(x).mean(dim=(2, 3))
        x = self.dropout(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(self.fc(x.float()))


#: the factory of ``small_cnn``: the class itself (its signature names the options)
small_cnn = register_backbone("small_cnn")(SmallCNN)
