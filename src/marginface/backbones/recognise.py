"""Which registered backbone a bare state dict belongs to, from its names and shapes.

A released ``backbone.pth`` (InsightFace's arcface_torch) or a ``model.pt`` without its
``model.json`` carries no architecture name; :func:`infer_backbone_info` reads it from the
parameter names and shapes: the iResNet depth from the blocks per stage, ``mbf``'s scale and
blocks, MobileFaceNet's and small_cnn's widths, the embedding width D, and the input size where
the network fixes it. The guess is then proved by loading the state dict strictly
(:func:`marginface.backbones.checkpoint.load_state_checked`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Info = dict[str, Any]


def infer_iresnet_info(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """Model info for a bare InsightFace iResNet state dict (e.g. a released ``backbone.pth``):
    the depth from the blocks per stage, D from ``fc``, the input size from ``fc``'s width.
    None when the keys are not an iResNet's."""
    from marginface.backbones.iresnet import LAYERS

    if not all(k in state for k in ("conv1.weight", "fc.weight", "features.running_mean")):
        return None
    blocks = []
    for stage in range(1, 5):
        indices = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
        blocks.append(max(indices) + 1 if indices else 0)
    depth = next((d for d, layers in LAYERS.items() if list(layers) == blocks), None)
    embedding, fc_in = (int(n) for n in state["fc.weight"].shape)
    side = round((fc_in / 512) ** 0.5)
    if depth is None or side * side * 512 != fc_in:
        return None
    return {
        "backbone": f"iresnet{depth}",
        "backbone_kwargs": {"embedding_size": embedding, "input_size": 16 * side},
        "image_size": 16 * side,
    }


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    shape = getattr(value, "shape", None)
    return tuple(int(n) for n in shape) if shape is not None else None


def _count(state: Mapping[str, Any], prefix: str) -> int:
    """How many children ``prefix.N.`` the names hold (N = 0, 1, ...)."""
    found = {k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)}
    return len([n for n in found if n.isdigit()])


def infer_mbf_info(state: Mapping[str, Any]) -> Info | None:
    """arcface_torch's MobileFaceNet (``mbf``, ``mbf_large``): scale from the stem's width,
    blocks from the residual stages, D from the linear layer, S from the global conv."""
    stem = _shape(state, "layers.0.layers.0.weight")
    gdc = _shape(state, "features.layers.0.layers.0.weight")
    linear = _shape(state, "features.layers.2.weight")
    if stem is None or gdc is None or linear is None or stem[0] % 64:
        return None
    first = 1 if "layers.1.layers.0.weight" in state else _count(state, "layers.1.layers.")
    blocks = [first, *(_count(state, f"layers.{i}.layers.") for i in (3, 5, 7))]
    size = 16 * gdc[-1]
    kwargs = {"embedding_size": linear[0], "input_size": size}
    kwargs |= {"blocks": blocks, "scale": stem[0] // 64}
    return {"backbone": "mbf", "backbone_kwargs": kwargs, "image_size": size}


def infer_mobilefacenet_info(state: Mapping[str, Any]) -> Info | None:
    """marginface's MobileFaceNet (the paper's layout): width, D and S from the shapes."""
    stem = _shape(state, "stem.0.0.weight")
    gdc = _shape(state, "gdc.0.weight")
    linear = _shape(state, "linear.weight")
    if stem is None or gdc is None or linear is None or stem[0] % 64:
        return None
    size = 16 * gdc[-1]
    kwargs = {"embedding_size": linear[0], "input_size": size, "width": stem[0] // 64}
    return {"backbone": "mobilefacenet", "backbone_kwargs": kwargs, "image_size": size}


def infer_small_cnn_info(state: Mapping[str, Any]) -> Info | None:
    """marginface's small_cnn: width and D from the shapes (it takes any input size)."""
    first = _shape(state, "body.0.weight")
    fc = _shape(state, "fc.weight")
    if first is None or fc is None or first[0] % 32 or "features.running_mean" not in state:
        return None
    kwargs = {"embedding_size": fc[0], "width": first[0] // 32}
    return {"backbone": "small_cnn", "backbone_kwargs": kwargs}


#: backbone family -> its recogniser; iResNets under one name, resolved to the depth found
RECOGNISERS: dict[str, Callable[[Mapping[str, Any]], Info | None]] = {
    "iresnet": infer_iresnet_info,
    "mbf": infer_mbf_info,
    "mobilefacenet": infer_mobilefacenet_info,
    "small_cnn": infer_small_cnn_info,
}


def strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict without a ``module.`` prefix on every name (a DataParallel save)."""
    keys = list(state)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def infer_backbone_info(state: Mapping[str, Any], name: str | None = None) -> Info | None:
    """Model info (``backbone``, ``backbone_kwargs``, maybe ``image_size``) of the registered
    backbone whose names and shapes ``state`` has; None when none fits.

    ``name``: only that backbone (``iresnet50``, ``mbf``, ...) is tried; its depth or family
    must be the one found.
    """
    for family, recognise in RECOGNISERS.items():
        if name is not None and not name.startswith(family):
            continue
        try:
            info = recognise(state)
        except (TypeError, ValueError, AttributeError, IndexError):
            info = None
        if info is not None and (name is None or info["backbone"] == name):
            return info
    return None
