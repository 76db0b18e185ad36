"""Name -> backbone factory registry behind :func:`create_backbone` and :func:`list_backbones`."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from marginface.checks import check_positive_int

BackboneFactory = Callable[..., nn.Module]

_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: make a factory ``f(embedding_size=512, **options) -> nn.Module`` (a function
    or a module class) available by name; its signature names the options it takes."""

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES and _BACKBONES[name] is not factory:
            raise ValueError(f"backbone name {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorate


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_BACKBONES)


def backbone_options(name: str) -> dict[str, object] | None:
    """The options of backbone ``name`` beyond ``embedding_size``, with their defaults; None
    when its factory takes any keyword (``**kwargs``: not checked before the call)."""
    params = inspect.signature(_BACKBONES[name]).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {
        k: p.default
        for k, p in params.items()
        if k != "embedding_size" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def create_backbone(name: str, embedding_size: int = 512, **kwargs: object) -> nn.Module:
    """Build the backbone registered as ``name``: a module mapping (B, 3, H, W) -> (B, D).

    Args:
        name: one of :func:`list_backbones`, e.g. ``"iresnet50"`` or ``"small_cnn"``.
        embedding_size: width D of the embedding.
        **kwargs: architecture options (``input_size``, ``dropout``, ...); an unknown option
            or an unknown name is a ValueError listing the valid ones.
    """
    if name not in _BACKBONES:
        valid = ", ".join(list_backbones())
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {valid}")
    check_positive_int(embedding_size, "embedding_size")
    options = backbone_options(name)
    unknown = sorted(set(kwargs) - set(options)) if options is not None else []
    if unknown:
        words = "argument" if len(unknown) == 1 else "arguments"
        raise ValueError(
            f"backbone {name!r}: unexpected keyword {words} {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(f'{k}={v!r}' for k, v in options.items()) or '(none)'}"
        )
    try:
        return _BACKBONES[name](embedding_size=embedding_size, **kwargs)
    except TypeError as exc:
        raise ValueError(f"backbone {name!r}: {exc}") from exc
