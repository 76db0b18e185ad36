"""A model's input contract: what image tensor its own authors feed it.

``model.json`` keeps it under ``"input"``::

    {"size": 112, "colour": "RGB", "mean": [127.5, 127.5, 127.5],
     "std": [127.5, 127.5, 127.5], "flip_test": true}

- ``size``: side of the square aligned crop (equal to ``image_size``);
- ``colour``: channel order of the tensor, ``"RGB"`` or ``"BGR"``;
- ``mean``, ``std``: per channel, in 0-255 pixel units and in the model's channel order: the
  model sees ``(pixel - mean) / std``;
- ``flip_test``: whether its authors add the mirrored crop's embedding (the commands' default
  for ``--no-flip``).

A model saved without the key (every marginface model before it existed) has marginface's own
contract, :data:`PROJECT_CONTRACT`: RGB, ``(pixel - 127.5) / 127.5``, flip test.

How every command honours it: images always enter marginface's pipeline as marginface's own
tensors (RGB, ``(p - 127.5) / 127.5``, :func:`marginface.data.transforms.to_tensor`), and
:func:`apply_input_contract` (called by ``load_model``) puts one exact per-channel affine map
and channel swap in front of the model, so the network sees exactly ``(p - mean) / std`` in its
own channel order: ``t * (127.5 / std) + (127.5 - mean) / std`` with ``t = (p - 127.5) / 127.5``.
A model with marginface's contract gets no map at all (the identity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

#: marginface's own contract (data/transforms.py: RGB, (p / 255 - 0.5) / 0.5), flip test on
PROJECT_CONTRACT: dict[str, Any] = {
    "colour": "RGB",
    "mean": [127.5, 127.5, 127.5],
    "std": [127.5, 127.5, 127.5],
    "flip_test": True,
}

COLOURS = ("RGB", "BGR")


def default_contract(image_size: int) -> dict[str, Any]:
    """marginface's own contract for crops of ``image_size``."""
    return {"size": int(image_size), **PROJECT_CONTRACT}


def _three(value: Any, key: str, source: str, positive: bool = False) -> list[float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value] * 3
    ok = isinstance(value, list | tuple) and len(value) == 3
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ok = ok and all(math.isfinite(v) and (v > 0 or not positive) for v in value)
    if not ok:
        need = "positive finite numbers" if positive else "finite numbers"
        raise ValueError(f"{source}: input.{key} must be 1 or 3 {need}, got {value!r}")
    return [float(v) for v in value]


def check_contract(value: Any, image_size: int, source: str = "model info") -> dict[str, Any]:
    """The complete, checked contract of ``value`` (None -> marginface's own for
    ``image_size``); ValueError naming ``source`` and the key that is wrong."""
    if value is None:
        return default_contract(image_size)
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: input must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - {"size", *PROJECT_CONTRACT})
    if unknown:
        raise ValueError(f"{source}: input has unknown key(s) {', '.join(unknown)}")
    out = {**default_contract(image_size), **dict(value)}
    if out["size"] != image_size:
        raise ValueError(
            f"{source}: input.size {out['size']!r} differs from image_size {image_size}"
        )
    if out["colour"] not in COLOURS:
        raise ValueError(f"{source}: input.colour must be RGB or BGR, got {out['colour']!r}")
    out["mean"] = _three(out["mean"], "mean", source)
    out["std"] = _three(out["std"], "std", source, positive=True)
    if not isinstance(out["flip_test"], bool):
        raise ValueError(f"{source}: input.flip_test must be true or false")
    return out


def is_project_contract(contract: Mapping[str, Any]) -> bool:
    """True when ``contract`` feeds the model marginface's own tensors unchanged."""
    return all(contract[k] == PROJECT_CONTRACT[k] for k in ("colour", "mean", "std"))


class ContractHook:
    """Forward pre-hook: marginface's tensor (RGB, (p - 127.5) / 127.5) -> the model's own
    (channel order, (p - mean) / std). Kept as an object so that copies of the model keep it
    and :func:`remove_input_contract` finds it."""

    def __init__(self, contract: Mapping[str, Any]) -> None:
        self.contract = dict(contract)
        self.swap = contract["colour"] == "BGR"
        # in the model's channel order: y_c = t_c * scale_c + shift_c, t in that order too
        self.scale = [127.5 / s for s in contract["std"]]
        self.shift = [
            (127.5 - m) / s for m, s in zip(contract["mean"], contract["std"], strict=True)
        ]

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            return args
        if self.swap:
            x = x.flip(1)
        scale = torch.tensor(self.scale, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        shift = torch.tensor(self.shift, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (torch.addcmul(shift, x, scale), *args[1:])


def apply_input_contract(model: nn.Module, contract: Mapping[str, Any]) -> nn.Module:
    """``model`` taking marginface's tensors and feeding its network its own contract (a
    forward pre-hook; none when the contract is marginface's own). Returns ``model``."""
    remove_input_contract(model)
    if not is_project_contract(contract):
        model.register_forward_pre_hook(ContractHook(contract))
    return model


def remove_input_contract(model: nn.Module) -> nn.Module:
    """``model`` without the hook of :func:`apply_input_contract`: it takes its own tensors
    (what an ONNX export of it takes). Returns ``model``."""
    hooks = model._forward_pre_hooks
    for key in [k for k, hook in hooks.items() if isinstance(hook, ContractHook)]:
        del hooks[key]
    return model


def contract_of(model: nn.Module) -> dict[str, Any] | None:
    """The contract the hook of :func:`apply_input_contract` applies, or None."""
    for hook in model._forward_pre_hooks.values():
        if isinstance(hook, ContractHook):
            return dict(hook.contract)
    return None


def to_model_input(pixels: Tensor, contract: Mapping[str, Any]) -> Tensor:
    """RGB pixels (B, 3, S, S) in 0-255 -> what the model of ``contract`` is fed (its channel
    order, (p - mean) / std): the authors' preprocessing, for checks and tests."""
    x = pixels.flip(1) if contract["colour"] == "BGR" else pixels
    mean = torch.tensor(contract["mean"], dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(contract["std"], dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
