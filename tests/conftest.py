"""Suite-wide settings and shared fixtures. The tests use tiny tensors, for which one intra-op
thread is fastest (and several threads contend badly when the machine is busy). The real photo
(``astronaut``) and the MTCNN ``detector`` serve the data and evaluation tests."""

from pathlib import Path

import pytest
import torch
from PIL import Image

torch.set_num_threads(1)


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
    from marginface.data.detect import FaceDetector
    from marginface.data.mtcnn import weights_folder

    try:
        weights_folder()
    except FileNotFoundError as exc:
        pytest.skip(f"MTCNN weights absent: {exc}")
    return FaceDetector()
