"""The three MTCNN networks (P-Net, R-Net, O-Net) and their pretrained weights.

MTCNN: Zhang, Zhang, Li, Qiao, "Joint Face Detection and Alignment Using Multitask Cascaded
Convolutional Networks", IEEE SPL 2016. The weights are those of the authors' Caffe models as
converted by facenet-pytorch (Tim Esler, MIT licence): its wheel ships them as plain state dicts
in ``facenet_pytorch/data/{pnet,rnet,onet}.pt``. marginface never imports facenet-pytorch (its
pins and its torchvision import conflict with ours); it only reads those three files, so the
wheel is installed without its dependencies::

    pip install --no-deps facenet-pytorch==2.6.0

The layer names below match the state dicts. Every network takes RGB images scaled as
``(pixel - 127.5) / 128`` and returns, per window, the face probability, 4 box offsets (in units
of the window's side) and (O-Net) 10 landmark coordinates (5 x, then 5 y, in units of the window).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from marginface.text import cut, printable

#: The pip package whose wheel holds the weight files, and the version measured with.
WEIGHTS_PACKAGE = "facenet-pytorch"
WEIGHTS_VERSION = "2.6.0"
#: Environment variable naming a folder with pnet.pt, rnet.pt and onet.pt (overrides the wheel).
WEIGHTS_ENV = "MARGINFACE_MTCNN_WEIGHTS"


class PNet(nn.Module):
    """Proposal network: fully convolutional over a whole image, one 12x12 window per output
    cell, stride 2. (B, 3, H, W) -> face probability (B, H', W') and offsets (B, 4, H', W')."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_1(x).softmax(dim=1)[:, 1], self.conv4_2(x)


def _flatten_like_caffe(x: Tensor) -> Tensor:
    # the converted dense weights expect Caffe's (W, H) order: the original networks were
    # trained on transposed images (MATLAB is column-major)
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class _Refiner(nn.Module):
    """R-Net and O-Net: conv + PReLU (+ max-pool) stages, then a dense layer + PReLU and the
    output layers, on a fixed-size crop. The attribute names (``conv{i}``, ``prelu{i}``,
    ``pool{i}``, ``dense{k}``, ``dense{k+1}_{j}``) are those of the weight files."""

    def __init__(
        self, stages: list[tuple[int, int, int, int | None]], flat: int, hidden: int, heads: int
    ) -> None:
        super().__init__()
        self.depth = len(stages)
        for i, (cin, cout, kernel, pool) in enumerate(stages, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, kernel_size=kernel))
            setattr(self, f"prelu{i}", nn.PReLU(cout))
            if pool is not None:
                setattr(self, f"pool{i}", nn.MaxPool2d(pool, 2, ceil_mode=True))
        k = self.depth + 1
        setattr(self, f"dense{k}", nn.Linear(flat, hidden))
        setattr(self, f"prelu{k}", nn.PReLU(hidden))
        for j, width in enumerate((2, 4, 10)[:heads], start=1):
            setattr(self, f"dense{k + 1}_{j}", nn.Linear(hidden, width))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        for i in range(1, self.depth + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        k = self.depth + 1
        x = getattr(self, f"prelu{k}")(getattr(self, f"dense{k}")(_flatten_like_caffe(x)))
        outs = [
            layer(x) for name, layer in self.named_children() if name.startswith(f"dense{k + 1}_")
        ]
        return (outs[0].softmax(dim=1)[:, 1], *outs[1:])


class RNet(_Refiner):
    """Refinement network: (N, 3, 24, 24) crops -> probability (N,), offsets (N, 4)."""

    def __init__(self) -> None:
        super().__init__([(3, 28, 3, 3), (28, 48, 3, 3), (48, 64, 2, None)], 576, 128, heads=2)


class ONet(_Refiner):
    """Output network: (N, 3, 48, 48) crops -> probability (N,), offsets (N, 4), landmarks
    (N, 10) as 5 x then 5 y, each a fraction of the crop's side."""

    def __init__(self) -> None:
        stages = [(3, 32, 3, 3), (32, 64, 3, 3), (64, 64, 3, 2), (64, 128, 2, None)]
        super().__init__(stages, 1152, 256, heads=3)


def weights_folder(folder: str | os.PathLike | None = None) -> Path:
    """The folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt``.

    ``folder`` if given, else ``$MARGINFACE_MTCNN_WEIGHTS``, else the ``data`` folder of the
    installed facenet-pytorch wheel (found without importing it). FileNotFoundError naming the
    package to install when the files are not there.
    """
    source = ""
    if folder is None:
        folder = os.environ.get(WEIGHTS_ENV) or None
        source = f" (set by {WEIGHTS_ENV})" if folder else ""
    if folder is None:
        spec = importlib.util.find_spec("facenet_pytorch")
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"the MTCNN face detector needs the weights shipped in the {WEIGHTS_PACKAGE} "
                f"wheel, which is not installed: pip install --no-deps "
                f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION} (marginface reads only its "
                f"data/{{pnet,rnet,onet}}.pt; or set {WEIGHTS_ENV} to a folder holding them)"
            )
        folder = Path(spec.origin).parent / "data"
    folder = Path(folder)
    missing = [n for n in ("pnet.pt", "rnet.pt", "onet.pt") if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MTCNN weights {', '.join(missing)} missing from {printable(folder)}{source} (they "
            "come with the "
            f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION} wheel: pip install --no-deps "
            f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION})"
        )
    return folder


def load_networks(folder: str | os.PathLike | None = None) -> tuple[PNet, RNet, ONet]:
    """The three networks with their pretrained weights, in eval mode (on the CPU)."""
    root = weights_folder(folder)
    env = os.environ.get(WEIGHTS_ENV) if folder is None else None
    nets = (PNet(), RNet(), ONet())
    for net, name in zip(nets, ("pnet", "rnet", "onet"), strict=True):
        path = root / f"{name}.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - any failure: these are not the weights
            where = f" (from {WEIGHTS_ENV}={printable(env)})" if env else ""
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(
                f"MTCNN weights {path}{where} are not the {name.upper()} weights of "
                f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}: {cut(first, 200)}"
            ) from None
        net.eval()
        net.requires_grad_(False)
    return nets
