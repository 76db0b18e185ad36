"""Suite-wide settings: the tests use tiny tensors, for which one intra-op thread is fastest
(and several threads contend badly when the machine is busy)."""

import pytest
import torch

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
