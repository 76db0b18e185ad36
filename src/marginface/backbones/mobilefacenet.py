"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices", 2018): about 1M parameters, 0.22 GMACs at 112x112.

Table 1 of the paper, for a 112x112 input:

=========================  ====  =====  ===  ======
operator                    t     c      n    stride
=========================  ====  =====  ===  ======
conv3x3                     -     64     1    2
depthwise conv3x3           -     64     1    1
bottleneck                  2     64     5    2
bottleneck                  4     128    1    2
bottleneck                  2     128    6    1
bottleneck                  4     128    1    2
bottleneck                  2     128    2    1
conv1x1                     -     512    1    1
linear GDConv (S/16)^2      -     512    1    1
linear conv1x1              -     D      1    1
=========================  ====  =====  ===  ======

Shapes: (B, 3, S, S) -> (B, D) for any S divisible by 16 (``input_size``, default 112; 32 and
64 work for fast tests): the global depthwise conv's kernel is S / 16.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginface.backbones._common import check_images, check_input_size
from marginface.backbones.registry import register_backbone
from marginface.checks import check_positive_int

#: (expansion t, output channels c, repeats n, stride of the first) per bottleneck stage
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


def conv_bn(
    cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ PReLU unless ``act`` is False: a linear conv)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand (t), 3x3 depthwise (stride), linear 1x1 project.

    Shapes: (B, cin, H, W) -> (B, cout, H / stride, W / stride); residual when shapes match.
    """

    def __init__(self, cin: int, cout: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.layers = nn.Sequential(
            conv_bn(cin, hidden),
            conv_bn(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            conv_bn(hidden, cout, act=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class MobileFaceNet(nn.Module):
    """MobileFaceNet with a global depthwise convolution (GDConv) embedding layer.

    Args:
        embedding_size: width D of the embedding (the paper: 128; InsightFace: 512).
        input_size: side S of the square inputs, divisible by 16 (default 112).
        width: channel multiplier of the conv stages (1 = the paper).

    Shapes: (B, 3, S, S) -> (B, D).
    """

    def __init__(self, embedding_size: int = 512, input_size: int = 112, width: int = 1) -> None:
        super().__init__()
        check_input_size(input_size, 16, "mobilefacenet")
        if input_size % 16:
            raise ValueError(
                f"mobilefacenet: input_size must be divisible by 16 (the network halves it 4 "
                f"times), got {input_size}"
            )
        check_positive_int(width, "mobilefacenet: width")
        self.input_size = input_size
        c64 = 64 * width
        self.stem = nn.Sequential(
            conv_bn(3, c64, kernel=3, stride=2),
            conv_bn(c64, c64, kernel=3, groups=c64),
        )
        blocks: list[nn.Module] = []
        cin = c64
        for t, c, n, s in STAGES:
            for i in range(n):
                blocks.append(Bottleneck(cin, c * width, t, s if i == 0 else 1))
                cin = c * width
        self.blocks = nn.Sequential(*blocks)
        self.conv_sep = conv_bn(cin, 512)
        side = input_size // 16
        self.gdc = conv_bn(512, 512, kernel=side, groups=512, act=False)
        # GDConv keeps padding 0: kernel // 2 padding would be wrong for a global kernel
        self.gdc[0].padding = (0, 0)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) images in [-1, 1] -> (B, D) embeddings (not normalised)."""
        check_images(x, "mobilefacenet", self.input_size)
        x = self.gdc(self.conv_sep(self.blocks(self.stem(x))))
        x = torch.flatten(x, 1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(self.linear(x.float()))


#: the factory of ``mobilefacenet``: the class itself (its signature names the options)
mobilefacenet = register_backbone("mobilefacenet")(MobileFaceNet)
