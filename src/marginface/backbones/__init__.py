"""Face-recognition backbones: images (B, 3, H, W) in [-1, 1] -> embeddings (B, D).

    >>> import torch, marginface
    >>> net = marginface.create_backbone("small_cnn", embedding_size=64)
    >>> net.eval()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 64])

Registered: iResNet 18/34/50/100/200 and ``mbf`` (InsightFace's parameter names, so released
InsightFace weights load), MobileFaceNet, ``small_cnn`` (a small fast CNN for CPU work and tests).
Saving and loading trained models: :mod:`marginface.backbones.checkpoint`.
"""

from marginface.backbones import iresnet, mbf, mobilefacenet, onnx_graph, small_cnn
from marginface.backbones.checkpoint import load_model, save_model
from marginface.backbones.iresnet import IBasicBlock, IResNet
from marginface.backbones.mobilefacenet import MobileFaceNet
from marginface.backbones.registry import create_backbone, list_backbones, register_backbone
from marginface.backbones.small_cnn import SmallCNN

__all__ = [
    "IBasicBlock",
    "IResNet",
    "MobileFaceNet",
    "SmallCNN",
    "create_backbone",
    "iresnet",
    "list_backbones",
    "load_model",
    "mbf",
    "mobilefacenet",
    "onnx_graph",
    "register_backbone",
    "save_model",
    "small_cnn",
]
