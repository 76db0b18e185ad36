"""marginface: margin-based softmax heads for deep face recognition, and the toolkit around them.

Library use needs only the heads::

    import marginface
    head = marginface.create_head("arcface", embedding_size=512, num_classes=10_000)
    loss = head.loss(embeddings, labels)

The names below are imported on first use, so that ``import marginface`` (which every
``marginface`` command does first) does not import torch; ``marginface --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marginface.lazy import lazy_names

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "create_head": "marginface.heads",
    "list_heads": "marginface.heads",
    "create_backbone": "marginface.backbones",
    "list_backbones": "marginface.backbones",
    "import_model": "marginface.inference.importing",
}

if TYPE_CHECKING:
    from marginface.backbones import create_backbone, list_backbones
    from marginface.heads import create_head, list_heads
    from marginface.inference.importing import import_model


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    "__version__",
    "create_backbone",
    "create_head",
    "import_model",
    "list_backbones",
    "list_heads",
]
