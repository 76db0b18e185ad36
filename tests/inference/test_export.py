"""ONNX export, verified with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginface.inference.export import export_onnx

ort = pytest.importorskip("onnxruntime")


def test_export_dynamic_batch_matches_torch(tiny_net, tmp_path):
    out = tmp_path / "sub" / "model.onnx"
    info = export_onnx(tiny_net, out, image_size=16)
    assert out.exists() and info["max_abs_diff"] <= 1e-4 and info["embedding_size"] == 8
    assert info["max_abs_diff_normalized"] <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    x = torch.rand(5, 3, 16, 16) * 2 - 1  # a batch size the export never saw
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, tiny_net(x).numpy(), atol=1e-4)
    assert not list(out.parent.glob(".*"))  # no temporary file left


def test_failed_check_leaves_nothing(tiny_net, tmp_path):
    out = tmp_path / "model.onnx"
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_onnx(tiny_net, out, image_size=16, atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_export_needs_onnx_suffix(tiny_net, tmp_path):
    with pytest.raises(ValueError, match="must end with .onnx"):
        export_onnx(tiny_net, tmp_path / "model.bin", image_size=16)


class Huge(torch.nn.Module):
    """A model with outputs ~1e6: float32 rounding alone differs by more than 1e-4."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * 1e6 + 3e6


def test_tolerance_is_relative_for_large_outputs(tiny_net, tmp_path):
    info = export_onnx(Huge(tiny_net), tmp_path / "huge.onnx", image_size=16)
    assert info["output_scale"] > 1e6
    assert info["max_abs_diff"] <= 1e-4 * info["output_scale"]
    assert info["max_abs_diff_normalized"] <= 1e-4
