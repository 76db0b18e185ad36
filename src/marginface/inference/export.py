"""ONNX export of a backbone, checked against onnxruntime before it is declared a success.

The graph maps ``input`` (B, 3, H, W) float32 to ``embedding`` (B, D), with a dynamic batch
axis B.  Embeddings are the raw backbone output (not normalised, no flip test), exactly what
``model(x)`` gives in PyTorch, fed the model's own input contract (colour order, mean, std; a
hook of :func:`marginface.backbones.contract.apply_input_contract` is left out of the export).
``metadata`` (e.g. the contract, written by ``marginface export`` under the key ``marginface``,
:func:`onnx_metadata`) goes into the file's ``metadata_props``.

The file is written to a temporary name beside the target, checked (several batch sizes of
random inputs, max abs difference <= ``atol``) and only then renamed into place; a failed
check leaves nothing behind.  The check (:func:`verify_onnx`) bounds the max abs difference of
the normalised embeddings by ``atol`` (1e-4), and that of the raw outputs by ``atol`` times
their magnitude where it exceeds 1.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from marginface.files import atomic_paths


def _export(model: nn.Module, example: torch.Tensor, path: str, opset: int) -> None:
    kwargs: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["embedding"],
        "opset_version": opset,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript exporter needs no extra package (onnxscript)
            torch.onnx.export(
                model,
                (example,),
                path,
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                dynamo=False,
                **kwargs,
            )
        except TypeError:  # torch without the dynamo switch
            torch.onnx.export(
                model,
                (example,),
                path,
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                **kwargs,
            )


def verify_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    image_size: int,
    batch_sizes: tuple[int, ...] = (1, 3, 8),
    atol: float = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """Compare onnxruntime with PyTorch on random inputs of each batch size.

    Two checks, both against ``atol``: the max abs difference of the L2-normalised embeddings
    (what every use of the model sees), and that of the raw outputs divided by
    ``max(1, max |output|)`` (float32 rounding grows with the magnitude; a model whose raw
    outputs are ~1e6 differs by ~0.1 in absolute terms).  ValueError when either exceeds
    ``atol`` or the output shapes differ.

    Returns ``{"max_abs_diff", "max_abs_diff_normalized", "output_scale"}``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    raw = normalised = scale = 0.0
    model = model.eval()
    for b in batch_sizes:
        x = torch.rand((b, 3, image_size, image_size), generator=gen) * 2 - 1
        with torch.inference_mode():
            expected = model(x).float().numpy().astype(np.float64)
        try:
            got = session.run(None, {input_name: x.numpy()})[0].astype(np.float64)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"ONNX model {path}: onnxruntime cannot run it on a batch of {b} ({first})"
            ) from None
        if got.shape != expected.shape:
            raise ValueError(
                f"ONNX model {path}: output shape {got.shape} for batch {b}, "
                f"PyTorch gives {expected.shape}"
            )
        raw = max(raw, float(np.max(np.abs(got - expected))))
        scale = max(scale, float(np.max(np.abs(expected))))

        def unit(a: np.ndarray) -> np.ndarray:
            return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

        normalised = max(normalised, float(np.max(np.abs(unit(got) - unit(expected)))))
    relative = raw / max(1.0, scale)
    if not (normalised <= atol and relative <= atol):
        raise ValueError(
            f"ONNX model {path} differs from PyTorch: max abs difference {normalised:.3g} on "
            f"normalised embeddings, {raw:.3g} on raw outputs of magnitude up to {scale:.3g}; "
            f"accepted: atol={atol:g} (raw: relative to the magnitude when it exceeds 1)"
        )
    return {"max_abs_diff": raw, "max_abs_diff_normalized": normalised, "output_scale": scale}


#: the oldest opset torch's exporter writes
MIN_OPSET = 9


def check_opset(opset: int) -> None:
    """ValueError naming ``--opset`` unless torch and the installed onnx both support it."""
    try:
        import onnx.defs

        newest = onnx.defs.onnx_opset_version()
    except ImportError:
        newest = 20
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"--opset must be in {MIN_OPSET}..{newest} (onnx here), got {opset}")


#: the metadata_props key holding marginface's JSON description of an exported model
METADATA_KEY = "marginface"


def onnx_metadata(info: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of a model exported with model info ``info``: under
    :data:`METADATA_KEY`, JSON with its input contract, embedding size, backbone and threshold
    (and calibration, when the info has one), read back by ``marginface import``."""
    import json

    described = {
        "input": info["input"],
        "embedding_size": info["backbone_kwargs"]["embedding_size"],
        "backbone": info["backbone"],
        "threshold": info.get("threshold"),
    }
    if info.get("calibration") is not None:
        described["calibration"] = info["calibration"]
    return {METADATA_KEY: json.dumps(described)}


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    image_size: int,
    opset: int = 17,
    atol: float = 1e-4,
    batch_sizes: tuple[int, ...] = (1, 3, 8),
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export ``model`` to ONNX at ``path`` (dynamic batch axis), verified with onnxruntime.

    Args:
        model: backbone (B, 3, H, W) -> (B, D); exported from a CPU float32 copy in eval mode.
        path: output ``.onnx`` file; its folder is created.
        image_size: H = W of the input.
        opset: ONNX opset version.
        atol: largest accepted max abs difference to PyTorch.
        batch_sizes: batch sizes checked (several, to prove the batch axis is dynamic).
        metadata: string key -> string value pairs for the file's ``metadata_props``.

    Returns: ``{"path", "max_abs_diff", "max_abs_diff_normalized", "output_scale", "opset",
    "image_size", "embedding_size"}``.
    """
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "ONNX export needs onnx and onnxruntime: pip install 'marginface[export]'"
        ) from exc
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"ONNX output path must end with .onnx, got {path}")
    from marginface.backbones.contract import remove_input_contract

    model = remove_input_contract(copy.deepcopy(model).float().cpu().eval())
    example = torch.zeros((2, 3, image_size, image_size))
    with torch.inference_mode():
        out = model(example)
    if out.ndim != 2:
        raise ValueError(f"the model must map (B, 3, H, W) to (B, D), got {tuple(out.shape)}")
    check_opset(opset)
    with atomic_paths(path) as (tmp,):
        try:
            _export(model, example, str(tmp), opset)
        except Exception as exc:  # noqa: BLE001 - torch's exporter raises many kinds
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"ONNX export at opset {opset} failed: {first}") from exc
        if metadata:
            proto = onnx.load(str(tmp))
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = str(key), str(value)
            onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp))
        check = verify_onnx(model, str(tmp), image_size, batch_sizes=batch_sizes, atol=atol)
    return {
        "path": str(path),
        **check,
        "opset": opset,
        "image_size": image_size,
        "embedding_size": int(out.shape[1]),
    }
