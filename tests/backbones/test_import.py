"""marginface import: state dicts recognised from their names, ONNX converted and checked
against onnxruntime, TorchScript; the input contract kept through export -> import and applied
by every command, so an imported model embeds a crop as its authors' own code does."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torch import nn

import marginface
from marginface.backbones import create_backbone, load_model, save_model
from marginface.backbones.contract import check_contract, contract_of
from marginface.backbones.recognise import infer_backbone_info
from marginface.cli import main
from marginface.inference.importing import INSIGHTFACE_CONTRACT, import_model

SIZE = 32


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """``net`` in eval mode with random BatchNorm affines and running statistics measured on
    random images (a fresh network's are 0 / 1, which would hide a converter that drops them;
    made-up statistics make some networks' outputs constant, which would hide everything)."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        net.train()
        for k in range(2):
            net(images(8, seed=100 + k))
    for m in bns:
        m.momentum = 0.1
    return net.eval()


def unit(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    """marginface's tensors: RGB, (p - 127.5) / 127.5, from whole pixels."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=gen).float() / 127.5 - 1


def embed(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return unit(model(x).numpy())


@pytest.mark.parametrize(
    "name, kwargs",
    [("mbf", {}), ("mbf", {"blocks": (2, 8, 12, 4), "scale": 4}), ("iresnet34", {})],
)
def test_architecture_recognised_from_names_and_shapes(name, kwargs):
    net = create_backbone(name, embedding_size=24, input_size=48, **kwargs)
    info = infer_backbone_info(net.state_dict())
    assert info["backbone"] == name and info["image_size"] == 48
    assert info["backbone_kwargs"]["embedding_size"] == 24
    rebuilt = create_backbone(info["backbone"], **info["backbone_kwargs"])
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    assert infer_backbone_info({"conv.weight": torch.zeros(3, 3)}) is None


def test_mbf_has_arcface_torch_names():
    """The names and shapes of arcface_torch's get_mbf(num_features=512) (scale 2, blocks
    1, 4, 6, 2), written out from its layer table: stem 128 channels, grouped conv of 64
    groups, GDC 7x7 at 112 px."""
    state = create_backbone("mbf").state_dict()
    assert tuple(state["layers.0.layers.0.weight"].shape) == (128, 3, 3, 3)
    assert tuple(state["layers.1.layers.0.weight"].shape) == (128, 2, 3, 3)
    assert tuple(state["layers.2.layers.0.layers.0.weight"].shape) == (128, 128, 1, 1)
    assert tuple(state["layers.4.layers.1.layers.0.weight"].shape) == (256, 1, 3, 3)
    assert "layers.5.layers.5.layers.2.layers.1.running_var" in state  # 6 blocks
    assert tuple(state["conv_sep.layers.0.weight"].shape) == (512, 256, 1, 1)
    assert tuple(state["features.layers.0.layers.0.weight"].shape) == (512, 1, 7, 7)
    assert tuple(state["features.layers.2.weight"].shape) == (512, 512)
    assert "features.layers.3.running_mean" in state


def test_insightface_state_dict_imported_without_naming_the_backbone(tmp_path):
    net = randomised(create_backbone("iresnet18", embedding_size=16, input_size=SIZE))
    pth = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, pth)  # a DDP save
    info = import_model(pth, tmp_path / "m", licence="test licence")
    assert info["backbone"] == "iresnet18" and info["image_size"] == SIZE
    assert info["input"] == {"size": SIZE, **INSIGHTFACE_CONTRACT}
    import hashlib

    src = info["source"]
    assert src["format"] == "insightface-pth" and src["licence"] == "test licence"
    assert src["sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
    model, loaded = load_model(tmp_path / "m")
    assert loaded["source"] == src and contract_of(model) is None  # InsightFace's = ours
    x = images()
    assert np.array_equal(embed(model, x), embed(net, x))


def export(tmp_path, name: str, contract: dict | None, threshold=0.25):
    """A saved model of backbone ``name`` with ``contract``, exported by ``marginface
    export``: (its folder, the .onnx)."""
    net = randomised(create_backbone(name, embedding_size=16, input_size=SIZE))
    info = {
        "backbone": name,
        "backbone_kwargs": {"embedding_size": 16, "input_size": SIZE},
        "image_size": SIZE,
        "threshold": threshold,
    }
    if contract is not None:
        info["input"] = {"size": SIZE, **contract}
    save_model(tmp_path / "orig", net, info)
    onnx_path = tmp_path / "orig.onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "orig"), "--output", str(onnx_path)]) == 0
    return tmp_path / "orig", onnx_path


VARIANTS = {
    "ours": None,
    "bgr_mean_std": {"colour": "BGR", "mean": [90.0, 110.0, 130.0], "std": [50.0, 60.0, 70.0]},
    "raw_pixels": {"colour": "RGB", "mean": [0.0] * 3, "std": [1.0] * 3, "flip_test": False},
}


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_onnx_export_import_round_trip(tmp_path, capsys, name, variant):
    if name == "iresnet18" and variant != "bgr_mean_std":
        pytest.skip("one iResNet round trip is enough; the contract variants use mobilefacenet")
    orig, onnx_path = export(tmp_path, name, VARIANTS[variant])
    capsys.readouterr()
    assert main(["import", str(onnx_path), "--output", str(tmp_path / "imp")]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime vs the converted module, max abs difference" in out
    model, info = load_model(tmp_path / "imp")
    _, orig_info = load_model(orig)
    assert info["backbone"] == "onnx_graph" and info["threshold"] == 0.25
    assert info["input"] == orig_info["input"]  # contract preserved through the metadata
    assert info["source"]["check"]["max_abs_diff_normalized"] <= 1e-4
    x = images()
    original, _ = load_model(orig)
    assert np.abs(embed(model, x) - embed(original, x)).max() <= 1e-4
    e = embed(original, x)
    assert (e @ e.T)[0, 1:].max() < 0.99  # the embeddings depend on the image


def test_authors_preprocessing_equals_marginface_embed(tmp_path):
    """onnxruntime fed a crop as the authors' code feeds it (BGR, (p - mean) / std) gives the
    embedding `marginface embed` gives for the crop's file; with flip_test false in the
    contract, embed does no flip test unless told."""
    contract = VARIANTS["bgr_mean_std"]
    _, onnx_path = export(tmp_path, "mobilefacenet", contract)
    assert (
        main(["import", str(onnx_path), "--output", str(tmp_path / "imp"), "--no-flip-test"]) == 0
    )
    crops = tmp_path / "crops"
    crops.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(crops / "a.png")
    npz = tmp_path / "e.npz"
    argv = ["embed", str(crops), "--checkpoint", str(tmp_path / "imp"), "--output", str(npz)]
    assert main([*argv, "--quiet"]) == 0
    ours = np.load(npz)["embeddings"]
    bgr = rgb[:, :, ::-1].astype(np.float32)
    blob = (bgr - np.float32(contract["mean"])) / np.float32(contract["std"])
    blob = blob.transpose(2, 0, 1)[None].copy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: blob})[0]
    assert np.abs(unit(theirs) - ours).max() <= 1e-4
    flipped = session.run(None, {session.get_inputs()[0].name: blob[..., ::-1].copy()})[0]
    assert np.abs(unit(theirs + flipped) - ours).max() > 1e-3  # so the flip test was off


def test_onnx_graph_fine_tunes(tmp_path):
    """The converted module trains: gradients reach every conv, batch statistics are used and
    running statistics updated in training mode."""
    _, onnx_path = export(tmp_path, "mobilefacenet", None)
    import_model(onnx_path, tmp_path / "imp")
    model, _ = load_model(tmp_path / "imp")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert bns and len(convs) > 40
    before = bns[0].running_mean.clone()
    model.train()
    model(images(4)).pow(2).sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    assert not torch.equal(before, bns[0].running_mean)


def test_onnx_graph_stages_cut_at_strided_convolutions(tmp_path):
    """``--freeze N`` takes a converted graph's first N stages: its nodes cut before each
    strided convolution, the nodes from the last one on (the embedding layers) never."""
    from marginface.training.finetune import backbone_stages, freeze

    _, onnx_path = export(tmp_path, "mobilefacenet", None)
    import_model(onnx_path, tmp_path / "imp")
    model, _ = load_model(tmp_path / "imp")
    strided = [
        i
        for i, node in enumerate(model.nodes)
        if node["op"] == "Conv" and max(node["attrs"]["strides"]) > 1
    ]
    stages = backbone_stages(model)
    bounds = [0, *strided[1:]]
    assert [name for name, _ in stages] == [
        f"nodes[{a}:{b}]" for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    assert len(stages) == len(strided) - 1 >= 2
    assert freeze(model, 2) == [stages[0][0], stages[1][0]]
    held = {id(p) for _, mods in stages[:2] for m in mods for p in m.parameters()}
    last = model.nodes[strided[-1]]["module"]
    assert held and all(not p.requires_grad for p in model.parameters() if id(p) in held)
    assert all(p.requires_grad for p in model.ops[last].parameters())
    model.train()
    assert not stages[0][1][0].training and model.ops[last].training


class Custom(nn.Module):
    """A network no registered backbone fits (a TorchScript import goes through ONNX)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("kind", ["registered", "custom"])
def test_torchscript_round_trip(tmp_path, kind):
    if kind == "registered":
        net = randomised(create_backbone("mobilefacenet", embedding_size=16, input_size=SIZE))
    else:
        net = randomised(Custom())
    path = tmp_path / "scripted.pt"
    scripted = torch.jit.trace(net, images(2)) if kind == "registered" else torch.jit.script(net)
    scripted.save(str(path))
    info = import_model(path, tmp_path / "imp", image_size=SIZE)
    assert info["source"]["format"] == "torchscript"
    assert info["backbone"] == ("mobilefacenet" if kind == "registered" else "onnx_graph")
    assert info["source"]["check"]["max_abs_diff_normalized"] <= 1e-4
    model, _ = load_model(tmp_path / "imp")
    x = images()
    assert np.abs(embed(model, x) - embed(net, x)).max() <= 1e-4


def test_old_model_json_gets_marginface_contract(tmp_path):
    net = create_backbone("small_cnn", embedding_size=8)
    save_model(
        tmp_path / "m", net, {"backbone": "small_cnn", "backbone_kwargs": {"embedding_size": 8}}
    )
    js = tmp_path / "m" / "model.json"
    info = json.loads(js.read_text())
    del info["input"]
    js.write_text(json.dumps(info))
    model, loaded = load_model(tmp_path / "m")
    assert loaded["input"] == {
        "size": 112,
        "colour": "RGB",
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
        "flip_test": True,
    }
    assert contract_of(model) is None


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"colour": "RGBA"}, "colour"),
        ({"mean": [1, 2]}, "mean"),
        ({"std": [1, 0, 1]}, "std"),
        ({"size": 64}, "size"),
        ({"flip_test": "yes"}, "flip_test"),
        ({"gamma": 2}, "gamma"),
    ],
)
def test_contract_checked(bad, word):
    with pytest.raises(ValueError, match=word):
        check_contract(bad, 112, "model.json")


def test_public_api():
    assert marginface.import_model is import_model


class ManyOps(nn.Module):
    """A network whose ONNX export holds the ops of published models beyond Conv/BN/PReLU:
    a computed flatten (Shape, Gather, Unsqueeze, Concat, Reshape), ReLU6 (Clip), pools, Pad,
    Concat of feature maps, Transpose, Sigmoid, Sub/Mul/Div by constants, MatMul."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=(0, 1))
        self.bn = nn.BatchNorm2d(12)
        self.proj = nn.Parameter(torch.randn(12 * 4 * 4, 10) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.25) * 2.0 / 1.5
        a = nn.functional.relu6(self.conv(nn.functional.pad(x, (1, 0, 1, 0))))
        x = torch.cat([a, torch.sigmoid(a)], dim=1)
        x = nn.functional.avg_pool2d(self.bn(x), 2)
        x = nn.functional.max_pool2d(x, 2, stride=2)
        x = x.transpose(2, 3)
        return torch.matmul(x.reshape(x.size(0), -1), self.proj)


def test_converter_ops_of_published_models(tmp_path):
    from marginface.inference.export import export_onnx

    net = randomised(ManyOps())
    path = tmp_path / "ops.onnx"
    export_onnx(net, path, SIZE, batch_sizes=(1, 3))
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Gather", "Concat", "Reshape", "Clip", "Pad", "Transpose"} <= ops, ops
    info = import_model(path, tmp_path / "imp", image_size=SIZE, colour="BGR")
    assert info["source"]["check"]["max_abs_diff_normalized"] <= 1e-4
    model, _ = load_model(tmp_path / "imp", contract=False)
    x = images(3)
    assert np.abs(embed(model, x) - embed(net, x)).max() <= 1e-4
    # the imported graph exports again (its computed shapes stay computed: any batch), and
    # imports back with its contract
    again = tmp_path / "again.onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "imp"), "--output", str(again)]) == 0
    info2 = import_model(again, tmp_path / "imp2")
    assert info2["input"] == info["input"]
    model2, _ = load_model(tmp_path / "imp2", contract=False)
    assert np.abs(embed(model2, x) - embed(net, x)).max() <= 1e-4


class FlattenByView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).view(x.size(0), -1))


def test_onnx_with_a_fixed_batch_takes_any_batch(tmp_path):
    """A file exported for batches of 1 (its flatten a Reshape to [1, -1]) converts to a
    module that takes any batch, and embeds each image as onnxruntime does."""
    import warnings

    net = FlattenByView().eval()
    path = tmp_path / "batch1.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (images(1),), str(path), input_names=["data"], dynamo=False)
    import onnx

    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    import_model(path, tmp_path / "imp")
    model, _ = load_model(tmp_path / "imp")
    x = images(3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = np.concatenate(
        [session.run(None, {"data": x[i : i + 1].numpy()})[0] for i in range(3)]
    )
    assert np.abs(embed(model, x) - unit(theirs)).max() <= 1e-4


def test_onnx_normalising_inside_its_graph_gets_raw_pixels(tmp_path):
    """InsightFace's rule (ArcFaceONNX): a Sub and a Mul among the first nodes' names mean
    the graph normalises itself (converted mxnet models): mean 0, std 1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(3 * 8 * 8, 6, dtype=np.float32), "w")
    nodes = [
        helper.make_node("Sub", ["data", "m"], ["a"], name="_minusscalar0"),
        helper.make_node("Mul", ["a", "s"], ["b"], name="_mulscalar0"),
        helper.make_node("Flatten", ["b"], ["c"], name="flatten0"),
        helper.make_node("MatMul", ["c", "w"], ["fc1"], name="fc1"),
    ]
    consts = [
        numpy_helper.from_array(np.array(127.5, dtype=np.float32), "m"),
        numpy_helper.from_array(np.array(0.0078125, dtype=np.float32), "s"),
        weight,
    ]
    graph = helper.make_graph(
        nodes,
        "mx",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, None)],
        initializer=consts,
    )
    path = tmp_path / "mx.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    info = import_model(path, tmp_path / "imp")
    assert info["input"]["mean"] == [0.0] * 3 and info["input"]["std"] == [1.0] * 3
    assert info["backbone_kwargs"]["embedding_size"] == 6
    # marginface's tensor of pixel p reaches the graph as p, which it maps to (p - 127.5) / 128
    model, _ = load_model(tmp_path / "imp")
    pixels = torch.randint(0, 256, (2, 3, 8, 8)).float()
    with torch.inference_mode():
        got = model(pixels / 127.5 - 1)
    expected = ((pixels - 127.5) * 0.0078125).reshape(2, -1)[:, :6]
    assert torch.allclose(got, expected, atol=1e-5)
