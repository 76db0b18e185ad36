"""marginface: margin-based softmax heads for deep face recognition, and the toolkit around them.

Library use needs only the heads::

    import marginface
    head = marginface.create_head("arcface", embedding_size=512, num_classes=10_000)
    loss = head.loss(embeddings, labels)

Backbones (``create_backbone``) are imported lazily so that ``import marginface`` stays light.
"""

from marginface.heads import create_head, list_heads

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("create_backbone", "list_backbones"):
        from marginface import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module 'marginface' has no attribute {name!r}")


__all__ = ["__version__", "create_backbone", "create_head", "list_backbones", "list_heads"]
