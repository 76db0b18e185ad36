"""iResNet: InsightFace's parameter names and shapes, parameter counts, other input sizes."""

from pathlib import Path

import pytest
import torch

from marginface.backbones import create_backbone
from marginface.backbones.iresnet import LAYERS

KEYS_FILE = Path(__file__).with_name("iresnet18_state_dict.txt")


def _pinned_keys() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in KEYS_FILE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split()
        rows.append((key, () if shape == "()" else tuple(int(s) for s in shape.split("x"))))
    return rows


def test_iresnet18_state_dict_is_insightface():
    with torch.device("meta"):
        net = create_backbone("iresnet18")
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == _pinned_keys()  # same names, same order, same shapes (187 entries)
    assert len(ours) == 187


def _iresnet_param_count(layers, embedding=512, side=7) -> int:
    """Parameters of InsightFace's iResNet written out from the architecture."""
    bn = lambda c: 2 * c  # noqa: E731 - weight and bias
    total = 3 * 64 * 9 + bn(64) + 64  # conv1, bn1, prelu
    cin = 64
    for planes, n in zip((64, 128, 256, 512), layers, strict=True):
        for i in range(n):
            block = bn(cin) + cin * planes * 9 + bn(planes) + planes + planes * planes * 9
            block += bn(planes)
            if i == 0:
                block += cin * planes + bn(planes)  # downsample conv1x1 + BN
            total += block
            cin = planes
    total += bn(512) + 512 * side * side * embedding + embedding + bn(embedding)
    return total


@pytest.mark.parametrize("depth", sorted(LAYERS))
def test_parameter_counts(depth):
    with torch.device("meta"):
        net = create_backbone(f"iresnet{depth}")
    assert sum(p.numel() for p in net.parameters()) == _iresnet_param_count(LAYERS[depth])


def test_iresnet50_is_43_6_million():
    assert _iresnet_param_count(LAYERS[50]) == 43_590_848  # InsightFace r50: 43.6M


def test_features_weight_frozen_at_one():
    net = create_backbone("iresnet18", embedding_size=32, input_size=16)
    assert not net.features.weight.requires_grad
    assert torch.equal(net.features.weight, torch.ones(32))


def test_insightface_state_dict_loads_strict_and_gives_same_embedding():
    a = create_backbone("iresnet18", embedding_size=16, input_size=32).eval()
    b = create_backbone("iresnet18", embedding_size=16, input_size=32).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("size,fc_in", [(112, 512 * 7 * 7), (64, 512 * 4 * 4), (32, 512 * 2 * 2)])
def test_other_input_sizes(size, fc_in):
    net = create_backbone("iresnet18", embedding_size=8, input_size=size)
    assert net.fc.in_features == fc_in
    if size <= 64:
        assert net.eval()(torch.randn(2, 3, size, size)).shape == (2, 8)


def test_wrong_input_size_is_clear():
    net = create_backbone("iresnet18", embedding_size=8, input_size=32).eval()
    with pytest.raises(ValueError, match="built for 32x32.*got 16x16"):
        net(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(1, 1, 32, 32))
