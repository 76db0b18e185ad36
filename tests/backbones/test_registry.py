"""The backbone registry and the shape contract every backbone keeps."""

import pytest
import torch

import marginface
from marginface.backbones import create_backbone, list_backbones


def test_list_backbones():
    names = list_backbones()
    assert {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200"} <= set(names)
    assert {"mobilefacenet", "small_cnn"} <= set(names)
    assert marginface.list_backbones() == names


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*iresnet50.*small_cnn"):
        create_backbone("resnet9")


def test_bad_kwarg_and_embedding_size():
    with pytest.raises(ValueError, match="small_cnn"):
        create_backbone("small_cnn", no_such_option=1)
    with pytest.raises(ValueError, match="embedding_size"):
        create_backbone("small_cnn", embedding_size=0)


def test_options_are_checked_against_the_factory_signature():
    with pytest.raises(
        ValueError, match="'iresnet18': unexpected keyword argument 'drop_out'.*dropout=0.0"
    ):
        create_backbone("iresnet18", drop_out=0.1)


CASES = [("small_cnn", 16), ("small_cnn", 32), ("mobilefacenet", 32), ("mobilefacenet", 64)]


@pytest.mark.parametrize("name,size", CASES)
def test_forward_backward_shapes(name, size):
    net = create_backbone(name, embedding_size=24, input_size=size)
    x = torch.randn(3, 3, size, size, requires_grad=True)
    y = net(x)
    assert y.shape == (3, 24) and y.dtype == torch.float32
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_bf16_autocast_gives_float32_embeddings():
    net = create_backbone("small_cnn", embedding_size=8).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(torch.randn(2, 3, 16, 16))
    assert y.dtype == torch.float32


def test_mobilefacenet_112_and_size_check():
    with torch.device("meta"):
        net = create_backbone("mobilefacenet", embedding_size=128)
    assert net.gdc[0].kernel_size == (7, 7)
    assert 0.9e6 < sum(p.numel() for p in net.parameters()) < 1.1e6  # paper: ~0.99M at D=128
    with pytest.raises(ValueError, match="divisible by 16.*got 40"):
        create_backbone("mobilefacenet", input_size=40)
