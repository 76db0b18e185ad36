"""Tiny models and pair sets shared by the evaluation tests."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))  # helpers: ijb_reference


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


@contextlib.contextmanager
def one_thread():
    """torch on one thread inside (restored after): on a shared, busy CPU two OpenMP threads
    made a tiny training step 70x slower (1.8 s against 0.026 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _evaluation_tests_on_one_thread():
    """Every test of this folder runs torch on one thread; other folders are untouched."""
    with one_thread():
        yield


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def pair_set() -> SimpleNamespace:
    """40 pairs of 16x16 images: genuine pairs are noisy copies, impostors unrelated."""
    gen = torch.Generator().manual_seed(0)
    n = 40
    issame = np.arange(n) % 2 == 0
    images = []
    for same in issame:
        a = torch.rand((3, 16, 16), generator=gen) * 2 - 1
        b = (
            a + 0.05 * torch.randn((3, 16, 16), generator=gen)
            if same
            else (torch.rand((3, 16, 16), generator=gen) * 2 - 1)
        )
        images += [a, b]
    return SimpleNamespace(images=TensorDataset(torch.stack(images)), issame=issame, name="toy")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A small_cnn (16-d, 16x16 input) trained 15 steps with ArcFace on synthetic:8x4, saved
    with save_model; returns the run folder."""
    import marginface
    from marginface.backbones.checkpoint import save_model
    from marginface.data import open_dataset

    torch.manual_seed(0)
    data = open_dataset("synthetic:8x4", image_size=16)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.as_tensor(data.labels)
    net = marginface.create_backbone("small_cnn", embedding_size=16)
    head = marginface.create_head("arcface", embedding_size=16, num_classes=8, s=16.0, m=0.2)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=3e-3)
    net.train()
    with one_thread():  # session fixtures are set up before the autouse one
        for _ in range(15):
            flip = torch.rand(len(images)) < 0.5
            batch = torch.where(flip[:, None, None, None], images.flip(3), images)
            loss = head.loss(net(batch), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    run = tmp_path_factory.mktemp("run") / "tiny"
    info = {
        "backbone": "small_cnn",
        "backbone_kwargs": {"embedding_size": 16},
        "image_size": 16,
        "identity_names": list(data.identity_names),
        "threshold": None,
        "head": "arcface",
        "head_kwargs": head.hparams(),
    }
    save_model(run, net.eval(), info)
    return run


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory):
    """ROOT/<name>/<name>_000k.png (LFW naming, k = 1..3): 6 synthetic identities x 3 images
    of 16x16."""
    from PIL import Image

    from marginface.data import open_dataset
    from marginface.data.transforms import to_pixels

    root = tmp_path_factory.mktemp("faces") / "faces"
    data = open_dataset("synthetic:6x3,first=500", image_size=16)
    for i in range(len(data)):
        image, label = data[i]
        name = f"person{label:02d}"  # our own names: independent of the data's naming
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_pixels(image)).save(folder / f"{name}_{i % 3 + 1:04d}.png")
    return root
