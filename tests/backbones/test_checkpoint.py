"""save_model / load_model: round trip, the three path kinds, clear errors, atomic writes."""

import json
import os

import pytest
import torch

from marginface.backbones import create_backbone, load_model, save_model
from marginface.files import atomic_torch_save

INFO = {
    "backbone": "small_cnn",
    "backbone_kwargs": {"embedding_size": 16, "input_size": 16},
    "image_size": 16,
    "identity_names": ["a", "b"],
    "threshold": 0.3,
    "head": "arcface",
    "head_kwargs": {"s": 64.0, "m": 0.5},
}


def _trained_net():
    net = create_backbone("small_cnn", embedding_size=16, input_size=16)
    net.train()(torch.randn(4, 3, 16, 16))  # move the BN running stats off their defaults
    return net.eval()


def test_round_trip(tmp_path):
    net = _trained_net()
    pt, js = save_model(tmp_path, net, INFO)
    assert pt.name == "model.pt" and js.name == "model.json"
    assert json.loads(js.read_text())["identity_names"] == ["a", "b"]
    x = torch.randn(2, 3, 16, 16)
    for path in (tmp_path, pt):
        loaded, info = load_model(path)
        assert not loaded.training
        assert info["threshold"] == 0.3 and info["head"] == "arcface"
        assert torch.equal(loaded(x), net(x))
    # model.pt is a plain state dict
    assert set(torch.load(pt, weights_only=True)) == set(net.state_dict())


def test_load_from_training_checkpoint(tmp_path):
    net = _trained_net()
    blob = {"backbone": net.state_dict(), "model_info": INFO}
    atomic_torch_save(blob, tmp_path / "checkpoint.pt")
    loaded, info = load_model(tmp_path)  # the folder has no model.pt: falls back
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x), net(x)) and info["backbone"] == "small_cnn"


def test_mismatch_names_file_and_keys(tmp_path):
    save_model(tmp_path, _trained_net(), INFO)
    info = dict(INFO, backbone_kwargs={"embedding_size": 32, "input_size": 16})
    (tmp_path / "model.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"model\.pt.*mis-shaped keys.*fc\.weight"):
        load_model(tmp_path / "model.pt")


def test_missing_json_and_missing_file(tmp_path):
    torch.save(_trained_net().state_dict(), tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(tmp_path / "model.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.pt or checkpoint.pt"):
        load_model(tmp_path / "empty")


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    atomic_torch_save({"ok": torch.ones(1)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"bad": Unpicklable()}, target)
    assert torch.equal(torch.load(target, weights_only=True)["ok"], torch.ones(1))
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary left behind


def test_bare_insightface_state_dict_loads(tmp_path):
    """A released InsightFace backbone.pth has no model.json: the iResNet is inferred."""
    net = create_backbone("iresnet18", embedding_size=32, input_size=32).eval()
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    loaded, info = load_model(tmp_path / "backbone.pth")
    assert info["backbone"] == "iresnet18" and info["image_size"] == 32
    assert info["backbone_kwargs"] == {"embedding_size": 32, "input_size": 32}
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), net(x))
    with torch.device("meta"):
        r100 = create_backbone("iresnet100").state_dict()
    from marginface.backbones.recognise import infer_iresnet_info

    assert infer_iresnet_info(r100)["backbone_kwargs"] == {"embedding_size": 512, "input_size": 112}
    assert infer_iresnet_info({"weight": torch.ones(1)}) is None
