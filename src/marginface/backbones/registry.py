"""Name -> backbone factory registry behind :func:`create_backbone` and :func:`list_backbones`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

BackboneFactory = Callable[..., nn.Module]

_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: make a factory ``f(embedding_size=512, **kw) -> nn.Module`` available by name."""

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES and _BACKBONES[name] is not factory:
            raise ValueError(f"backbone name {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorate


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_BACKBONES)


def create_backbone(name: str, embedding_size: int = 512, **kwargs: object) -> nn.Module:
    """Build the backbone registered as ``name``: a module mapping (B, 3, H, W) -> (B, D).

    Args:
        name: one of :func:`list_backbones`, e.g. ``"iresnet50"`` or ``"small_cnn"``.
        embedding_size: width D of the embedding.
        **kwargs: architecture options (``input_size``, ``dropout``, ...); unknown ones are a
            TypeError from the factory, an unknown name a ValueError listing the valid ones.
    """
    if name not in _BACKBONES:
        valid = ", ".join(list_backbones())
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {valid}")
    size = embedding_size
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"embedding_size must be a positive int, got {embedding_size!r}")
    try:
        return _BACKBONES[name](embedding_size=embedding_size, **kwargs)
    except TypeError as exc:
        raise ValueError(f"backbone {name!r}: {exc}") from exc
