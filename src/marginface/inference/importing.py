"""``marginface import``: a published face model -> a marginface model folder.

:func:`import_model` reads one file and writes ``OUTPUT/model.pt`` (a plain state dict) and
``OUTPUT/model.json`` (the format of :mod:`marginface.backbones.checkpoint`, with the model's
input contract under ``input`` and its origin under ``source``), which every command takes as
``--checkpoint OUTPUT``. Formats, detected from the file's first bytes unless named:

- ``insightface-pth`` / ``state-dict``: a torch state dict (``torch.save``; a released
  arcface_torch ``backbone.pth``). Read with ``torch.load(weights_only=True)``: tensors only, a
  pickle naming a class or function is refused. The backbone is recognised from the names and
  shapes (:mod:`marginface.backbones.recognise`: iResNet-18..200, ``mbf``, MobileFaceNet,
  small_cnn) or named with ``backbone``;
- ``onnx``: converted by marginface's own converter (:mod:`marginface.backbones.onnx_graph`)
  into the trainable ``onnx_graph`` backbone, and checked against onnxruntime;
- ``torchscript``: TorchScript is code. ``torch.jit.load`` compiles it (TorchScript ops only, no
  Python), so import only files whose source you trust. Its weights go onto the registered
  backbone whose names and shapes they have, else the module is exported to ONNX and converted
  as above; the folder written holds no code either way.

Whatever the format, the converted module is compared with the original (onnxruntime, or the
TorchScript module) on random images: the max abs difference of L2-normalised embeddings must
be <= ``atol`` (1e-4). Every check runs before anything is written; the two files are then
renamed into place together, so a refused import leaves ``OUTPUT`` as it was.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from marginface.backbones.checkpoint import complete_info, load_state_checked
from marginface.backbones.contract import PROJECT_CONTRACT, check_contract, to_model_input
from marginface.backbones.recognise import RECOGNISERS, infer_backbone_info, strip_prefix
from marginface.backbones.registry import create_backbone, list_backbones
from marginface.files import file_sha256

FORMATS = ("insightface-pth", "onnx", "torchscript", "state-dict")

#: the contract InsightFace's own code feeds its models: arcface_torch's inference.py and
#: eval (cv2 BGR -> RGB, (p / 255 - 0.5) / 0.5, flip test in verification.py) and the
#: model_zoo's ArcFaceONNX (blobFromImages(1 / 127.5, mean 127.5, swapRB=True): RGB too)
INSIGHTFACE_CONTRACT: dict[str, Any] = dict(PROJECT_CONTRACT)

#: ArcFaceONNX's rule for models that normalise inside the graph (converted mxnet models: a
#: Sub and a Mul among the first 8 node names): raw 0-255 RGB pixels
RAW_PIXELS: dict[str, Any] = {**PROJECT_CONTRACT, "mean": [0.0] * 3, "std": [1.0] * 3}


def detect_format(path: Path) -> str:
    """``torch``, ``torchscript`` or ``onnx`` from the file's first bytes (a zip holding
    ``code/`` is TorchScript, another zip or a pickle a torch file, a protobuf ONNX)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise ValueError(f"{path}: the file is empty")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{path}: a damaged or truncated zip archive ({exc})") from None
        if any(re.search(r"(^|/)code/", n) for n in names):
            return "torchscript"
        return "torch"
    if head[0] == 0x80:  # pickle protocol >= 2: torch.save's legacy format
        return "torch"
    if head[0] == 0x08 or path.suffix.lower() == ".onnx":  # protobuf field 1: ir_version
        return "onnx"
    raise ValueError(
        f"{path}: not a torch, TorchScript or ONNX file (it starts with {head[:8]!r}); name "
        f"the format with --format {'|'.join(FORMATS)} if it is one"
    )


# --- torch state dicts -----------------------------------------------------------------------


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a torch file, read with ``weights_only``: one clear ValueError for a
    pickle naming a class or function, a damaged file, or content that is not tensors."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ValueError(
            f"{path}: its pickle names a class or function{what}; marginface reads only tensors "
            "(torch.load weights_only) and runs no code from a model file: save the model's "
            "state_dict() instead"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated zips, bad pickles, foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: cannot read it as a torch file, damaged or truncated? ({first})"
        ) from None
    if isinstance(blob, Mapping):
        for key in ("state_dict", "model_state_dict", "backbone", "model"):
            inner = blob.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                blob = inner
                break
    if not isinstance(blob, Mapping) or not blob:
        raise ValueError(
            f"{path}: expected a state dict (names -> tensors), got {type(blob).__name__}"
        )
    bad = [k for k, v in blob.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict: entry {bad[0]!r} is not a named tensor")
    return strip_prefix(blob)


def _families() -> str:
    return "iresnet18/34/50/100/200, " + ", ".join(f for f in RECOGNISERS if f != "iresnet")


def backbone_of_state(
    state: Mapping[str, torch.Tensor], path: Path, backbone: str | None, image_size: int | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The registered backbone (loaded, eval mode) that ``state`` fits, and its model info."""
    if backbone is not None and backbone not in list_backbones():
        raise ValueError(
            f"--backbone: unknown backbone {backbone!r}; valid: {', '.join(list_backbones())}"
        )
    info = infer_backbone_info(state, backbone)
    if info is None and backbone is None:
        raise ValueError(
            f"{path}: its names and shapes match no registered backbone ({_families()}); if it "
            "is another registered backbone, name it with --backbone"
        )
    if info is None:
        recognisable = any(backbone.startswith(f) for f in RECOGNISERS)
        if recognisable:
            raise ValueError(f"{path}: its names and shapes are not those of a {backbone}")
        kwargs: dict[str, Any] = {}
        if image_size is not None:
            kwargs["input_size"] = image_size
        info = {"backbone": backbone, "backbone_kwargs": kwargs}
        try:
            model = create_backbone(backbone, **kwargs)
        except ValueError as exc:
            raise ValueError(f"--backbone {backbone}: {exc}") from None
        out = model.eval()(torch.zeros(2, 3, image_size or 112, image_size or 112))
        info["backbone_kwargs"]["embedding_size"] = int(out.shape[1])
    size = info.get("image_size")
    if size is not None and image_size is not None and size != image_size:
        raise ValueError(
            f"--image-size {image_size}: {path} is a {info['backbone']} built for {size}x{size}"
        )
    info["image_size"] = size or image_size or 112
    kwargs = dict(info["backbone_kwargs"])
    if info["backbone"] == "small_cnn":
        kwargs["input_size"] = info["image_size"]
    info["backbone_kwargs"] = kwargs
    model = create_backbone(info["backbone"], **kwargs)
    load_state_checked(model, state, str(path))
    return model.eval(), info


# --- ONNX ------------------------------------------------------------------------------------


def _read_onnx(path: Path) -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ValueError(
            "importing ONNX needs onnx and onnxruntime: pip install 'marginface[export]'"
        ) from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(
            f"{path}: cannot parse it as ONNX, damaged or truncated? ({exc})"
        ) from None
    if not model.graph.node:
        raise ValueError(f"{path}: not an ONNX model (no graph nodes)")
    return model


def _onnx_input_size(model: Any, path: Path, image_size: int | None) -> tuple[int, int | None]:
    """(S, static batch size or None) of the ONNX model's NCHW image input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    dims = (
        [
            d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim
        ]
        if inputs
        else []
    )
    if len(dims) != 4 or dims[1] not in (3, None):
        raise ValueError(f"{path}: the input must be images (N, 3, H, W), got dimensions {dims}")
    h, w = dims[2], dims[3]
    if h is not None and w is not None and h != w:
        raise ValueError(f"{path}: the input must be square images, got {h}x{w}")
    if h is not None and image_size is not None and h != image_size:
        raise ValueError(f"--image-size {image_size}: {path} takes {h}x{h} images")
    size = h or image_size
    if size is None:
        raise ValueError(f"{path}: its input size is not fixed in the file; give --image-size")
    return size, dims[0] or None


def _onnx_contract(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(contract from the file, other metadata): marginface's metadata when the file has it,
    else InsightFace's rule (ArcFaceONNX)."""
    from marginface.inference.export import METADATA_KEY

    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY in props:
        try:
            meta = json.loads(props[METADATA_KEY])
            contract = dict(meta["input"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"the ONNX metadata {METADATA_KEY!r} is not marginface's JSON"
            ) from None
        return contract, meta
    names = [n.name for n in model.graph.node[:8]]
    sub = any(n.startswith(("Sub", "_minus")) for n in names)
    mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return dict(RAW_PIXELS if sub and mul else INSIGHTFACE_CONTRACT), {}


def _unit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _random_inputs(contract: Mapping[str, Any], size: int, batches: Sequence[int]) -> list:
    """Random images as the model takes them (its contract), one batch per entry."""
    gen = torch.Generator().manual_seed(0)
    pixels = [torch.rand((b, 3, size, size), generator=gen) * 255 for b in batches]
    return [to_model_input(p, contract) for p in pixels]


def _embedding_of(model: nn.Module, x: torch.Tensor, path: Path) -> np.ndarray:
    with torch.inference_mode():
        out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{path}: its output is not one embedding per image: {shape} for a batch of "
            f"{x.shape[0]} images (expected ({x.shape[0]}, D))"
        )
    return out.float().numpy()


def onnx_backbone(
    path: Path, image_size: int | None, contract_flags: Mapping[str, Any], atol: float
) -> tuple[nn.Module, dict[str, Any], dict[str, Any], float]:
    """(converted module, model info, contract, max abs difference to onnxruntime)."""
    import onnxruntime as ort

    from marginface.backbones.onnx_graph import OnnxGraph, convert_onnx

    model = _read_onnx(path)
    size, batch = _onnx_input_size(model, path, image_size)
    description, state = convert_onnx(model, str(path), batch)  # unsupported ops: refused here
    contract, meta = _onnx_contract(model)
    contract = {**contract, **contract_flags, "size": size}
    net = OnnxGraph(1, description, size)
    load_state_checked(net, state, str(path))
    net.eval()
    batches = [batch] * 2 if batch else [1, 3]
    inputs = _random_inputs(contract, size, batches)
    ours = [_embedding_of(net, x, path) for x in inputs]
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        theirs = [session.run(None, {name: x.numpy()})[0] for x in inputs]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: onnxruntime cannot run it ({first})") from None
    diff = max(
        float(np.max(np.abs(_unit(a) - _unit(np.asarray(b).reshape(a.shape)))))
        if np.asarray(b).size == a.size
        else float("inf")
        for a, b in zip(ours, theirs, strict=True)
    )
    if not diff <= atol:
        raise ValueError(
            f"{path}: the converted module differs from onnxruntime by {diff:.3g} (max abs "
            f"difference of L2-normalised embeddings; accepted {atol:g}): not imported"
        )
    _check_any_batch(net, inputs[0][:1], path, atol)
    dim = int(ours[0].shape[1])
    info = {
        "backbone": "onnx_graph",
        "backbone_kwargs": {"embedding_size": dim, "input_size": size, "graph": description},
        "image_size": size,
    }
    if isinstance(meta.get("threshold"), int | float):
        info["threshold"] = float(meta["threshold"])
    return net, info, contract, diff


def _check_any_batch(net: nn.Module, one: torch.Tensor, path: Path, atol: float) -> None:
    """The converted module embeds a batch of 3 as it embeds each image alone (every command
    embeds in batches, whatever batch size the file fixed)."""
    gen = torch.Generator().manual_seed(2)
    batch = torch.cat([one, one + 0.1 * torch.randn(one.shape, generator=gen), one.flip(3)])
    try:
        together = _embedding_of(net, batch, path)
        alone = np.concatenate([_embedding_of(net, batch[i : i + 1], path) for i in range(3)])
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: the converted graph does not take a batch of 3 images ({first}); it "
            "fixes its batch size in a way marginface cannot undo"
        ) from None
    diff = float(np.max(np.abs(_unit(together) - _unit(alone))))
    if not diff <= atol:
        raise ValueError(
            f"{path}: the converted graph embeds an image differently in a batch of 3 than "
            f"alone (max abs difference {diff:.3g}); its batch size seems fixed"
        )


# --- TorchScript -----------------------------------------------------------------------------


def torchscript_backbone(
    path: Path,
    backbone: str | None,
    image_size: int | None,
    contract_flags: Mapping[str, Any],
    atol: float,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any], float, str]:
    """(module, info, contract, max abs difference to the TorchScript module, compared with)."""
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch.jit's many error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot load it as TorchScript ({first})") from None
    scripted.eval()
    state = strip_prefix(scripted.state_dict())
    contract = {**PROJECT_CONTRACT, **contract_flags}
    if infer_backbone_info(state, backbone) is not None:
        net, info = backbone_of_state(state, path, backbone, image_size)
        size = info["image_size"]
        contract["size"] = size
        inputs = _random_inputs(contract, size, [2, 3])
        ours = [_embedding_of(net, x, path) for x in inputs]
        theirs = [_embedding_of(scripted, x, path) for x in inputs]
        diff = max(
            float(np.max(np.abs(_unit(a) - _unit(b)))) for a, b in zip(ours, theirs, strict=True)
        )
        if not diff <= atol:
            raise ValueError(
                f"{path}: rebuilt as {info['backbone']}, it differs from the TorchScript module "
                f"by {diff:.3g} (accepted {atol:g}): not imported"
            )
        return net, info, contract, diff, "the TorchScript module"
    size = image_size or 112
    contract["size"] = size
    from marginface.inference.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "scripted.onnx"
        try:
            export_onnx(scripted, onnx_path, size, batch_sizes=(1, 2), atol=atol)
        except ValueError as exc:
            raise ValueError(
                f"{path}: its weights fit no registered backbone and it cannot be exported to "
                f"ONNX for conversion ({exc})"
            ) from None
        net, info, _, diff = onnx_backbone(onnx_path, size, contract, atol)
    return net, info, contract, diff, "the TorchScript module via onnxruntime"


# --- the import ------------------------------------------------------------------------------


def _contract_flags(
    colour: str | None, mean: Any, std: Any, flip_test: bool | None
) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if colour is not None:
        flags["colour"] = str(colour).upper()
    if mean is not None:
        flags["mean"] = list(mean) if isinstance(mean, list | tuple) else [mean] * 3
    if std is not None:
        flags["std"] = list(std) if isinstance(std, list | tuple) else [std] * 3
    if flip_test is not None:
        flags["flip_test"] = bool(flip_test)
    for key in ("mean", "std"):
        if key in flags and len(flags[key]) == 1:
            flags[key] = flags[key] * 3
    return flags


def import_model(
    path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str | None = None,
    backbone: str | None = None,
    licence: str | None = None,
    colour: str | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    flip_test: bool | None = None,
    image_size: int | None = None,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Import the face model file ``path`` into the model folder ``output``; returns the model
    info written to ``output/model.json`` (``source.check`` holds the parity measured).

    Args:
        format: one of :data:`FORMATS`; None = detected from the file.
        backbone: the registered backbone a state dict is for (None = recognised).
        licence: the model's licence, recorded in ``source``.
        colour, mean, std, flip_test: the input contract, where it differs from the format's
            default (InsightFace's for .pth and ONNX files, marginface's otherwise; an ONNX
            file exported by marginface carries its own). ``mean``/``std``: 0-255 pixel units,
            one number or three in the model's channel order.
        image_size: side of the input crops, where the file does not fix it.
        atol: largest accepted max abs difference of L2-normalised embeddings to the original.
    """
    path, output = Path(path), Path(output)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if format is not None and format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 8 <= image_size <= 4096
    ):
        raise ValueError(f"--image-size must be an int in 8..4096, got {image_size!r}")
    if not atol > 0:
        raise ValueError(f"--atol must be > 0, got {atol}")
    for name in ("model.json", "model.pt"):
        if (output / name).exists():
            raise FileExistsError(
                f"--output {output} already holds a model ({name}); choose a new folder"
            )
    from marginface.files import atomic_paths, check_writable_dir

    check_writable_dir(output, "--output")
    flags = _contract_flags(colour, mean, std, flip_test)
    check_contract(
        {**PROJECT_CONTRACT, **flags}, 112, "the contract flags (--colour, --mean, --std)"
    )
    kind = detect_format(path) if format is None else format
    compared = None
    if kind in ("torch", "insightface-pth", "state-dict"):
        state = load_state_dict_file(path)
        net, info = backbone_of_state(state, path, backbone, image_size)
        family = info["backbone"]
        insightface = family.startswith("iresnet") or family == "mbf"
        if kind == "torch":
            kind = "state-dict" if backbone is not None or not insightface else "insightface-pth"
        base = INSIGHTFACE_CONTRACT if kind == "insightface-pth" else PROJECT_CONTRACT
        contract = {**base, **flags, "size": info["image_size"]}
        diff = None
    elif kind == "onnx":
        if backbone is not None:
            raise ValueError("--backbone applies to state dicts; an ONNX model is converted as is")
        net, info, contract, diff = onnx_backbone(path, image_size, flags, atol)
        compared = "onnxruntime"
    else:
        net, info, contract, diff, compared = torchscript_backbone(
            path, backbone, image_size, flags, atol
        )
    info["input"] = contract
    source: dict[str, Any] = {
        "format": kind,
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "licence": licence,
    }
    if diff is not None:
        source["check"] = {"against": compared, "max_abs_diff_normalized": diff, "atol": atol}
    info["source"] = source
    info = complete_info(info, "the imported model")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    text = json.dumps(info, indent=1) + "\n"
    _check_rebuild(text, state, net, path)
    with atomic_paths(output / "model.pt", output / "model.json") as (pt, js):
        torch.save(state, pt)
        js.write_text(text, encoding="utf-8")
    return info


def _check_rebuild(
    text: str, state: Mapping[str, torch.Tensor], net: nn.Module, path: Path
) -> None:
    """What load_model will rebuild from the JSON and the state dict computes what ``net`` does."""
    info = json.loads(text)
    model = create_backbone(info["backbone"], **info["backbone_kwargs"])
    load_state_checked(model, state, str(path))
    size = info["image_size"]
    x = torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        same = torch.equal(model.eval()(x), net.eval()(x))
    if not same:
        raise AssertionError(f"{path}: the model rebuilt from model.json differs from the import")
