"""Hostile and wrong model files given to `marginface import`: one line naming the file (and
the op and node, the class, the shape) with exit code 2, nothing run, nothing written."""

import pickle

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from marginface.backbones import create_backbone
from marginface.cli import main

RAN = []


def mark_ran():
    RAN.append("code from the file ran")


class Payload:
    """A pickle naming this class calls :func:`mark_ran` when unpickled."""

    def __reduce__(self):
        return (mark_ran, ())


def onnx_file(path, nodes, outputs, inits=(), input_shape=("N", 3, 8, 8)):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        outputs,
        initializer=list(inits),
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def out(name, rank=2):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def import_error(capsys, tmp_path, model, *flags):
    target = tmp_path / "imported"
    code = main(["import", str(model), "--output", str(target), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("marginface import: error: "), err
    assert not target.exists() or not any(target.iterdir())  # nothing half-written
    return err[0]


def test_unsupported_onnx_op_named_with_its_node(capsys, tmp_path):
    path = onnx_file(
        tmp_path / "erf.onnx",
        [
            helper.make_node("Flatten", ["x"], ["f"], name="flat"),
            helper.make_node("Erf", ["f"], ["y"], name="the_erf_node"),
        ],
        [out("y")],
    )
    line = import_error(capsys, tmp_path, path)
    assert "op Erf is not supported" in line and "the_erf_node" in line and "erf.onnx" in line


def test_custom_domain_op_refused(capsys, tmp_path):
    node = helper.make_node("Evil", ["x"], ["y"], name="n0", domain="com.example")
    line = import_error(capsys, tmp_path, onnx_file(tmp_path / "c.onnx", [node], [out("y")]))
    assert "com.example.Evil" in line and "custom domain" in line


def test_pth_whose_pickle_names_a_class(capsys, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": Payload()}, path)
    line = import_error(capsys, tmp_path, path)
    assert "names a class or function" in line and "mark_ran" in line and "evil.pth" in line
    assert RAN == []
    plain = tmp_path / "plain.pkl"  # a bare pickle (not a torch zip) is read the same way
    plain.write_bytes(pickle.dumps(Payload(), protocol=2))
    import_error(capsys, tmp_path, plain)
    assert RAN == []


@pytest.mark.parametrize("kind", ["pth", "onnx"])
def test_truncated_file(capsys, tmp_path, kind):
    net = create_backbone("small_cnn", embedding_size=8).eval()
    full = tmp_path / f"full.{kind}"
    if kind == "pth":
        torch.save(net.state_dict(), full)
    else:
        from marginface.inference.export import export_onnx

        export_onnx(net, full, 16, batch_sizes=(1,))
    data = full.read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[: len(data) // 2])
    line = import_error(capsys, tmp_path, cut)
    assert "cut." in line and ("truncated" in line or "damaged" in line)
    empty = tmp_path / f"empty.{kind}"
    empty.write_bytes(b"")
    assert "empty" in import_error(capsys, tmp_path, empty)


def test_shape_that_matches_no_backbone(capsys, tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3), "encoder.bias": torch.zeros(4)}, path)
    line = import_error(capsys, tmp_path, path)
    assert "match no registered backbone" in line and "--backbone" in line
    state = create_backbone("iresnet18", embedding_size=8, input_size=32).state_dict()
    state["fc.weight"] = torch.zeros(8, 100)  # fits no input size
    torch.save(state, path)
    assert "match no registered backbone" in import_error(capsys, tmp_path, path)
    line = import_error(capsys, tmp_path, path, "--backbone", "mbf")
    assert "not those of a mbf" in line


def test_onnx_output_that_is_not_one_embedding(capsys, tmp_path):
    path = onnx_file(tmp_path / "maps.onnx", [helper.make_node("Relu", ["x"], ["y"])], [out("y")])
    line = import_error(capsys, tmp_path, path)
    assert "not one embedding per image" in line and "(1, 3, 8, 8)" in line
    two = onnx_file(
        tmp_path / "two.onnx",
        [helper.make_node("Flatten", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        [out("a"), out("b")],
    )
    assert "expected one embedding output, found 2" in import_error(capsys, tmp_path, two)


def test_not_a_model_file_and_bad_flags(capsys, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not a torch, TorchScript or ONNX file" in import_error(capsys, tmp_path, text)
    net = create_backbone("small_cnn", embedding_size=8)
    pth = tmp_path / "m.pth"
    torch.save(net.state_dict(), pth)
    assert "--mean takes 1 or 3" in import_error(capsys, tmp_path, pth, "--mean", "1", "2")
    assert "std" in import_error(capsys, tmp_path, pth, "--std", "0")
    assert "unknown backbone" in import_error(capsys, tmp_path, pth, "--backbone", "nope")


def test_output_that_holds_a_model_is_left_alone(capsys, tmp_path):
    net = create_backbone("small_cnn", embedding_size=8)
    pth = tmp_path / "m.pth"
    torch.save(net.state_dict(), pth)
    target = tmp_path / "imported"
    assert main(["import", str(pth), "--output", str(target)]) == 0
    before = (target / "model.json").read_bytes()
    assert main(["import", str(pth), "--output", str(target)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (target / "model.json").read_bytes() == before


def test_constant_of_huge_shape_refused(capsys, tmp_path):
    import numpy as np
    from onnx import numpy_helper

    huge = numpy_helper.from_array(np.array([1 << 20, 1 << 20], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="bomb"),
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("Add", ["f", "big"], ["y"]),
    ]
    path = onnx_file(tmp_path / "bomb.onnx", nodes, [out("y")], inits=[huge])
    line = import_error(capsys, tmp_path, path)
    assert "bomb" in line and "ConstantOfShape" in line
