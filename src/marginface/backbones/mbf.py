"""InsightFace's MobileFaceNet (``mbf`` of arcface_torch, the network of ``w600k_mbf``).

Not the paper's layout of :mod:`marginface.backbones.mobilefacenet`: arcface_torch widens every
stage by ``scale`` (2 for ``mbf``, 4 for ``mbf_large``) and fixes the group counts, so its
released weights need this module. Parameter names and shapes are those of arcface_torch's
``backbones/mobilefacenet.py``, so its ``backbone.pth`` loads with ``strict=True``::

    layers.0            ConvBlock 3 -> 64s, 3x3 stride 2
    layers.1            ConvBlock 64s -> 64s, 3x3, groups 64   (blocks[0] == 1)
                        or Residual of blocks[0] DepthWise, groups 128
    layers.2 .. 7       DepthWise(64s -> 64s, stride 2, g 128), Residual(blocks[1], g 128),
                        DepthWise(64s -> 128s, stride 2, g 256), Residual(blocks[2], g 256),
                        DepthWise(128s -> 128s, stride 2, g 512), Residual(blocks[3], g 256)
    conv_sep            ConvBlock 128s -> 512, 1x1
    features.layers     LinearBlock 512 -> 512 (S/16)x(S/16) depthwise, flatten,
                        Linear 512 -> D (no bias), BatchNorm1d(D)

A ConvBlock is ``layers = (Conv2d, BatchNorm2d, PReLU)``, a LinearBlock ``(Conv2d,
BatchNorm2d)``; a DepthWise block is ``layers = (ConvBlock 1x1 to g, ConvBlock 3x3 depthwise g,
LinearBlock 1x1 to out)`` plus the input when it is residual.

Shapes: (B, 3, S, S) -> (B, D) for S divisible by 16 (``input_size``, default 112).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.backbones._common import check_images, check_input_size
from marginface.backbones.registry import register_backbone
from marginface.checks import check_positive_int


class ConvBlock(nn.Module):
    """Conv (no bias) + BatchNorm2d (+ PReLU unless ``linear``), as ``self.layers``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        linear: bool = False,
    ) -> None:
        super().__init__()
        parts: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if not linear:
            parts.append(nn.PReLU(cout))
        self.layers = nn.Sequential(*parts)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """1x1 to ``groups`` channels, 3x3 depthwise (``stride``), linear 1x1 to ``cout``
    (+ the input when ``residual``)."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            ConvBlock(groups, cout, linear=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``blocks`` residual DepthWise blocks, as ``self.layers`` (arcface_torch's Residual)."""

    def __init__(self, channels: int, blocks: int, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(DepthWise(channels, channels, groups, 1, True) for _ in range(blocks))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv to 1x1, flatten, linear to D, BatchNorm1d: ``self.layers``."""

    def __init__(self, embedding_size: int, side: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(512, 512, side, groups=512, linear=True),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MBF(nn.Module):
    """arcface_torch's MobileFaceNet.

    Args:
        embedding_size: width D of the embedding (InsightFace: 512).
        input_size: side S of the square inputs, divisible by 16 (112).
        blocks: residual blocks of the four stages ((1, 4, 6, 2) for ``mbf``; (2, 8, 12, 4)
            for ``mbf_large``).
        scale: channel multiplier (2 for ``mbf``, 4 for ``mbf_large``).

    Shapes: (B, 3, S, S) -> (B, D).
    """

    def __init__(
        self,
        embedding_size: int = 512,
        input_size: int = 112,
        blocks: tuple[int, int, int, int] | list[int] = (1, 4, 6, 2),
        scale: int = 2,
    ) -> None:
        super().__init__()
        check_input_size(input_size, 16, "mbf")
        if input_size % 16:
            raise ValueError(f"mbf: input_size must be divisible by 16, got {input_size}")
        if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
            raise ValueError(f"mbf: blocks must be 4 positive ints, got {blocks!r}")
        check_positive_int(scale, "mbf: scale")
        self.input_size = input_size
        c64, c128 = 64 * scale, 128 * scale
        self.layers = nn.ModuleList([ConvBlock(3, c64, 3, 2, 1)])
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c64, c64, 3, 1, 1, groups=64))
        else:
            self.layers.append(Residual(c64, blocks[0], 128))
        self.layers.extend(
            [
                DepthWise(c64, c64, 128, 2, False),
                Residual(c64, blocks[1], 128),
                DepthWise(c64, c128, 256, 2, False),
                Residual(c128, blocks[2], 256),
                DepthWise(c128, c128, 512, 2, False),
                Residual(c128, blocks[3], 256),
            ]
        )
        self.conv_sep = ConvBlock(c128, 512)
        self.features = GDC(embedding_size, input_size // 16)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) images -> (B, D) embeddings (not normalised)."""
        check_images(x, "mbf", self.input_size)
        for layer in self.layers:
            x = layer(x)
        x = self.conv_sep(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(x.float())


#: the factory of ``mbf``: the class itself (its signature names the options)
mbf = register_backbone("mbf")(MBF)
