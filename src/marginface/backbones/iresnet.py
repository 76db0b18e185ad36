"""iResNet (Deng et al., ArcFace, CVPR 2019; "improved ResNet" of Duta et al.) as in InsightFace.

Parameter names and shapes are exactly those of InsightFace's
``recognition/arcface_torch/backbones/iresnet.py``, so a released InsightFace ``backbone.pth``
loads with ``load_state_dict(strict=True)`` and gives the same embedding::

    conv1, bn1, prelu,
    layer1..layer4: IBasicBlock(bn1, conv1, bn2, prelu, conv2, bn3, downsample.0 / .1),
    bn2, dropout, fc (512 * 7 * 7 -> D at 112x112), features (BatchNorm1d, weight frozen at 1)

Depths: 18 [2, 2, 2, 2], 34 [3, 4, 6, 3], 50 [3, 4, 14, 3], 100 [3, 13, 30, 3],
200 [6, 26, 60, 6].  Shapes: (B, 3, S, S) -> (B, D), S = ``input_size`` (default 112); other
sizes change only the input width of ``fc``: 512 * s * s with s = S halved (rounded up) 4 times.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from marginface.backbones._common import check_images, check_input_size, strided_size
from marginface.backbones.registry import register_backbone

LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block: BN-conv3x3-BN-PReLU-conv3x3(stride)-BN, + shortcut.

    Shapes: (B, inplanes, H, W) -> (B, planes, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-05),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """InsightFace's iResNet.

    Args:
        layers: blocks per stage, e.g. (3, 4, 14, 3) for iResNet-50.
        embedding_size: width D of the embedding (InsightFace's ``num_features``).
        dropout: dropout probability before ``fc`` (InsightFace: 0).
        input_size: side S of the square input images this network is built for (112).
        zero_init_residual: start every block's ``bn2`` weight at 0 (InsightFace option).

    Shapes: forward (B, 3, S, S) -> (B, D).  ``fc`` and ``features`` run in float32 even under
    autocast (as InsightFace's ``fp16`` mode does).
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        input_size: int = 112,
        zero_init_residual: bool = False,
        name: str = "iresnet",
    ) -> None:
        super().__init__()
        self.name = name
        self.input_size = check_input_size(input_size, 1, name)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = strided_size(input_size, 4)
        self.fc = nn.Linear(512 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        stage = [IBasicBlock(self.inplanes, planes, stride=2)]
        self.inplanes = planes
        stage += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) images in [-1, 1] -> (B, D) embeddings (not normalised)."""
        check_images(x, self.name, self.input_size)
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(self.fc(x.float()))


def _factory(depth: int):
    def build(embedding_size: int = 512, **kwargs) -> IResNet:
        return IResNet(LAYERS[depth], embedding_size, name=f"iresnet{depth}", **kwargs)

    build.__doc__ = f"iResNet-{depth}, blocks {list(LAYERS[depth])} (InsightFace ``r{depth}``)."
    sig = inspect.signature(IResNet)  # the options: IResNet's, less the two fixed here
    build.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for k, p in sig.parameters.items() if k not in ("layers", "name")]
    )
    return build


iresnet18 = register_backbone("iresnet18")(_factory(18))
iresnet34 = register_backbone("iresnet34")(_factory(34))
iresnet50 = register_backbone("iresnet50")(_factory(50))
iresnet100 = register_backbone("iresnet100")(_factory(100))
iresnet200 = register_backbone("iresnet200")(_factory(200))
