"""Suite-wide settings and the fixtures several test folders share. The tests use tiny tensors,
for which one intra-op thread is fastest (and several threads contend badly when the machine is
busy). Models: ``tiny_net`` (a small embedding network), ``saved_model`` (untrained),
``trained_run`` (trained a few steps); data:
``face_folder``, ``make_folder``; the real photo (``astronaut``) and the MTCNN ``detector``;
``cli`` runs ``marginface train``. Plain helpers are in ``tests/_support`` (``from _support.X
import Y``)."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _support.threads import one_thread
from _support.tiny_net import TinyNet

torch.set_num_threads(1)

#: scripts that tests start as processes or that run by hand, not modules to import (pytest's
#: --doctest-modules would import them: one starts an NCCL process group at import)
collect_ignore = ["parallel/gpu_smoke.py", "fuzz/run.py"]


@pytest.fixture(autouse=True)
def _detect_cache_in_tmp(tmp_path, monkeypatch):
    """The detection cache (marginface.data.detection.detect_cache) of each test in its own folder,
    never the user's ~/.cache."""
    monkeypatch.setenv("MARGINFACE_DETECT_CACHE", str(tmp_path / "detect-cache"))


@pytest.fixture
def tiny_net() -> TinyNet:
    """:class:`_support.tiny_net.TinyNet` (8-d), seeded, in eval mode."""
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """An untrained small_cnn (8-d, 16x16 input) saved with save_model: a run folder holding
    model.pt and model.json, for tests of the commands that load a model."""
    from marginface.backbones import create_backbone
    from marginface.backbones.checkpoint import save_model

    torch.manual_seed(0)
    net = create_backbone("small_cnn", embedding_size=8)
    run = tmp_path_factory.mktemp("model") / "run"
    save_model(
        run, net, {"backbone": "small_cnn", "backbone_kwargs": {"embedding_size": 8},
                   "image_size": 16, "threshold": 0.3}
    )  # fmt: skip
    return run


def astronaut_path() -> Path | None:
    """scikit-image's ``data/astronaut.png`` (a public-domain 512x512 portrait), found without
    importing scikit-image; None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "astronaut.png"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    path = astronaut_path()
    if path is None:
        pytest.skip("scikit-image (a test dependency: pip install -e .[dev]) ships astronaut.png")
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="session")
def detector():
    """The MTCNN detector on the CPU; the weights come with facenet-pytorch (scripts/env.sh
    installs it with --no-deps)."""
    from marginface.data.detection.detect import FaceDetector
    from marginface.data.detection.mtcnn import weights_folder

    try:
        weights_folder()
    except FileNotFoundError as exc:
        pytest.skip(f"MTCNN weights absent: {exc}")
    return FaceDetector()


@pytest.fixture
def cli():
    """``cli(*args)`` -> exit code of ``marginface train ARGS``."""
    from marginface.cli import main

    def run(*args: str) -> int:
        return main(["train", *map(str, args)])

    return run


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
    with one_thread():  # whatever an earlier test left set
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
        "training": {"steps": 15, "data": "synthetic:8x4"},  # trained: the use commands take it
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


def random_pixels(seed: int, size: tuple[int, int] = (20, 24)) -> np.ndarray:
    """A deterministic random RGB image (H, W, 3) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, list[np.ndarray]]]]:
    """``make_folder(counts, size=(20, 24), name="faces")`` writes PNG identity folders.

    ``counts`` maps identity name -> number of images. Returns the folder and the pixels written
    (per identity, in file order).
    """

    def make(
        counts: dict[str, int], size: tuple[int, int] = (20, 24), name: str = "faces"
    ) -> tuple[Path, dict[str, list[np.ndarray]]]:
        root = tmp_path / name
        written: dict[str, list[np.ndarray]] = {}
        for n, (identity, count) in enumerate(counts.items()):
            (root / identity).mkdir(parents=True)
            written[identity] = []
            for i in range(count):
                pixels = random_pixels(1000 * n + i, size)
                Image.fromarray(pixels).save(root / identity / f"{identity}_{i + 1:04d}.png")
                written[identity].append(pixels)
        return root, written

    return make
