"""Stand-ins for what a user brings, for the docs' examples of using a model (README's "Use a
published model", docs/use.md): a small trained model folder marked as imported, a
verification ``.bin`` with enough impostor pairs for FAR 1e-3, and two face crops."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

SIZE = 16


def model_folder(path: str | Path, steps: int = 15) -> Path:
    """A small_cnn (16-d, 16 px) trained ``steps`` steps with ArcFace on synthetic:8x4, saved
    as a model folder whose model.json says where it came from (as marginface import does)."""
    import marginface
    from marginface.backbones.checkpoint import save_model
    from marginface.data import open_dataset

    torch.manual_seed(0)
    data = open_dataset("synthetic:8x4", image_size=SIZE)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.as_tensor(data.labels)
    net = marginface.create_backbone("small_cnn", embedding_size=16)
    head = marginface.create_head("arcface", embedding_size=16, num_classes=8, s=16.0, m=0.2)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=3e-3)
    net.train()
    for _ in range(steps):
        loss = head.loss(net(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    info = {
        "backbone": "small_cnn",
        "backbone_kwargs": {"embedding_size": 16},
        "image_size": SIZE,
        "source": {"path": "stand-in for a published model", "licence": "test data"},
    }
    save_model(path, net.eval(), info)
    return Path(path)


def pair_bin(path: str | Path, spec: str = "synthetic:40x8,first=5000") -> Path:
    """A verification .bin of the pairs generated from ``spec`` (40x8: 1,120 genuine and
    1,120 impostor pairs, enough for FAR 1e-3), as PNG crops."""
    from marginface.data import open_pairs
    from marginface.data.formats.verification import write_bin
    from marginface.data.transforms import to_pixels

    pairs = open_pairs(spec, image_size=SIZE)
    encoded = []
    for i in range(len(pairs.images)):
        buffer = io.BytesIO()
        Image.fromarray(to_pixels(pairs.images[i])).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    write_bin(path, encoded, pairs.issame)
    return Path(path)


def crops(*paths: str | Path, spec: str = "synthetic:2x2,first=9000") -> None:
    """Face crops of ``SIZE`` px written to ``paths`` (consecutive images of ``spec``)."""
    from marginface.data import open_dataset
    from marginface.data.transforms import to_pixels

    data = open_dataset(spec, image_size=SIZE)
    for i, path in enumerate(paths):
        Image.fromarray(to_pixels(data[i][0])).save(path)
