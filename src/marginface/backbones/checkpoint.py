"""Saving and loading trained backbones: ``model.pt`` (a plain state_dict) + ``model.json``.

``model.pt`` holds only the backbone's ``state_dict`` (for iResNets, InsightFace's names: a
``backbone.pth`` of InsightFace is the same kind of file). ``model.json`` holds the info needed
to rebuild and use it::

    backbone         name for create_backbone, e.g. "iresnet50"
    backbone_kwargs  its keyword arguments, including embedding_size (and input_size)
    image_size       side of the square input images
    identity_names   the training identities (list) or None
    threshold        the verification threshold to use if known, else None; where
                     ``calibration`` is given, its threshold wins (``marginface calibrate``
                     writes both)
    head, head_kwargs the margin head it was trained with (name and hyperparameters)
    input            the input contract: size, colour, mean, std, flip_test (absent: marginface's
                     own, see :mod:`marginface.backbones.contract`)
    source           where an imported model came from: format, path, sha256, licence
    calibration      the threshold at a known FAR on a named pair set, or None
                     (:mod:`marginface.evaluation.calibration`)
    training         what trained it (steps, epochs, final loss, data, date), or None

Both are written through :mod:`marginface.files` (a temporary name, then a rename), so a
crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginface.backbones.contract import apply_input_contract, check_contract
from marginface.backbones.recognise import infer_backbone_info
from marginface.backbones.registry import create_backbone
from marginface.checks import is_int_at_least
from marginface.files import atomic_torch_save, atomic_write_text, open_regular, read_text

INFO_DEFAULTS: dict[str, Any] = {
    "image_size": 112,
    "identity_names": None,
    "threshold": None,
    "head": None,
    "head_kwargs": {},
    "calibration": None,
    "training": None,
}


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


#: largest embedding width and input side a model file may declare (far beyond any face
#: model; a bigger number is a damaged or hostile file, not a model to allocate)
MAX_EMBEDDING_SIZE = 65536
MAX_IMAGE_SIZE = 4096


def _whole(value: Any, low: int, high: int) -> bool:
    return is_int_at_least(value, low) and value <= high


def complete_info(info: Mapping[str, Any], source: str = "model info") -> dict[str, Any]:
    """``info`` with the optional keys filled in; ValueError naming ``source`` when a required
    key is missing or a size is not a sane whole number."""
    if not isinstance(info, Mapping):
        raise ValueError(
            f"{source}: expected a JSON object of model info, got {type(info).__name__}"
        )
    missing = [k for k in ("backbone", "backbone_kwargs") if k not in info]
    if missing:
        raise ValueError(f"{source} lacks required key(s) {', '.join(missing)}")
    out = {**INFO_DEFAULTS, **dict(info)}
    if not isinstance(out["backbone"], str) or not isinstance(out["backbone_kwargs"], Mapping):
        raise ValueError(f"{source}: backbone must be a name and backbone_kwargs a mapping")
    out["backbone_kwargs"] = dict(out["backbone_kwargs"])
    if "embedding_size" not in out["backbone_kwargs"]:
        raise ValueError(f"{source}: backbone_kwargs must include embedding_size")
    size = out["backbone_kwargs"]["embedding_size"]
    if not _whole(size, 1, MAX_EMBEDDING_SIZE):
        raise ValueError(
            f"{source}: embedding_size must be in 1..{MAX_EMBEDDING_SIZE}, got {size!r}"
        )
    for key, value in (("image_size", out["image_size"]), *(
        ("input_size", v) for k, v in out["backbone_kwargs"].items() if k == "input_size"
    )):  # fmt: skip
        if not _whole(value, 1, MAX_IMAGE_SIZE):
            raise ValueError(f"{source}: {key} must be in 1..{MAX_IMAGE_SIZE}, got {value!r}")
    threshold = out["threshold"]
    if threshold is not None and not isinstance(threshold, int | float):
        raise ValueError(f"{source}: threshold must be a number or null, got {threshold!r}")
    out["input"] = check_contract(out.get("input"), out["image_size"], source)
    _check_records(out, source)
    return out


def _check_records(info: Mapping[str, Any], source: str) -> None:
    """``calibration`` and ``training``: null or a mapping; a calibration's threshold a finite
    number and its FAR in (0, 1)."""
    import math

    for key in ("calibration", "training"):
        if info[key] is not None and not isinstance(info[key], Mapping):
            raise ValueError(f"{source}: {key} must be a mapping or null, got {info[key]!r}")
    cal = info["calibration"]
    if cal is None:
        return
    for key, low, high in (("threshold", -math.inf, math.inf), ("far", 0.0, 1.0)):
        value = cal.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not low < value < high:
            raise ValueError(
                f"{source}: calibration {key} must be a finite number"
                + (" in (0, 1)" if key == "far" else "")
                + f", got {value!r}"
            )


def save_model(
    directory: str | os.PathLike, backbone: nn.Module, info: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``directory/model.pt`` (backbone state_dict) and ``directory/model.json`` (info).

    Returns the two paths. ``info`` needs ``backbone`` and ``backbone_kwargs`` (with
    ``embedding_size``); the other keys default to :data:`INFO_DEFAULTS`.
    """
    directory = Path(directory)
    info = complete_info(info)
    state = {k: v.detach().cpu() for k, v in unwrap(backbone).state_dict().items()}
    pt = atomic_torch_save(state, directory / "model.pt")
    js = atomic_write_text(directory / "model.json", json.dumps(info, indent=2) + "\n")
    return pt, js


def state_dict_mismatch(
    model: nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, mis-shaped "key: file (shape) vs model (shape)")."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return missing, unexpected, misshaped


def load_state_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)``, or a ValueError naming ``source`` and every bad key."""
    missing, unexpected, misshaped = state_dict_mismatch(model, state)
    if missing or unexpected or misshaped:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")

        parts = [
            f"{label} ({len(keys)}): {show(keys)}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("mis-shaped keys", misshaped),
            )
            if keys
        ]
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(
            f"{source}: the state dict does not fit the architecture {name}: " + "; ".join(parts)
        )
    model.load_state_dict(state)


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no model.pt or checkpoint.pt in this folder")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    return path


def model_json_path(path: str | os.PathLike) -> Path | None:
    """The ``model.json`` that holds the info of the model at ``path`` (as :func:`load_model`
    finds it), or None when its info is elsewhere (a training ``checkpoint.pt``, a bare
    state dict)."""
    file = _resolve(Path(path))
    js = file.with_name("model.json") if file.suffix == ".pt" else file.with_suffix(".json")
    return js if file.name != "checkpoint.pt" and js.is_file() else None


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", contract: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved backbone: ``(backbone in eval mode, info)``.

    With ``contract`` (the default) the backbone takes marginface's image tensors (RGB,
    ``(p - 127.5) / 127.5``) and converts them to its own input contract (``info["input"]``,
    :func:`~marginface.backbones.contract.apply_input_contract`); without, it takes its own.

    ``path``: a run folder (its ``model.pt``, else its ``checkpoint.pt``), a ``model.pt`` with
    ``model.json`` beside it, a training ``checkpoint.pt`` (keys ``model_info``, ``backbone``),
    or a bare InsightFace iResNet / ``mbf`` state dict such as a released ``backbone.pth``
    (architecture inferred from its names and shapes, see
    :mod:`marginface.backbones.recognise`).
    """
    file = _resolve(Path(path))
    with open_regular(file, "checkpoint") as f:  # never a FIFO or a device
        try:
            blob = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise ValueError(f"{file}: cannot read it as a torch file ({exc})") from exc
    if isinstance(blob, dict) and "checksum" in blob:  # a training checkpoint that has one
        from marginface.checksum import verify_checksum

        verify_checksum(blob, file)
    source = str(file)
    if isinstance(blob, dict) and "model_info" in blob and "backbone" in blob:
        info, state = blob["model_info"], blob["backbone"]
    else:
        js = file.with_name("model.json") if file.suffix == ".pt" else file.with_suffix(".json")
        state = blob
        if js.is_file():
            source = str(js)
            from marginface.settings import load_json

            info = load_json(read_text(js, "model info"), str(js))
        else:
            # released InsightFace weights only: another model's size is in its model.json
            info = None
            if isinstance(state, Mapping):
                info = infer_backbone_info(state)
                if info is not None and not info["backbone"].startswith(("iresnet", "mbf")):
                    info = None
            if info is None:
                raise FileNotFoundError(
                    f"{file}: no {js.name} beside it to say which backbone it is (and it is not "
                    f"an InsightFace iResNet or mbf state dict; marginface import reads others)"
                )
    if not isinstance(state, Mapping):
        raise ValueError(f"{file}: expected a state dict, got {type(state).__name__}")
    info = complete_info(info, source)
    try:
        model = create_backbone(info["backbone"], **info["backbone_kwargs"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None
    load_state_checked(model, state, str(file))
    if contract:
        apply_input_contract(model, info["input"])
    return model.to(map_location).eval(), info
