"""The traits a head class declares, checked once when the class is defined."""

from __future__ import annotations

import pytest
from torch import Tensor

from marginface.heads import MarginHead, list_heads
from marginface.heads.registry import head_class

#: name: (loss_kind, scale_policy, state)
TRAITS = {
    "adacos": ("margin_softmax", "own", "none"),
    "adaface": ("margin_softmax", "auto", "running_statistics"),
    "arcface": ("margin_softmax", "auto", "none"),
    "combined": ("margin_softmax", "auto", "none"),
    "cosface": ("margin_softmax", "auto", "none"),
    "curricularface": ("margin_softmax", "auto", "running_statistics"),
    "elasticface_arc": ("margin_softmax", "auto", "steps"),
    "elasticface_arc_plus": ("margin_softmax", "auto", "steps"),
    "elasticface_cos": ("margin_softmax", "auto", "steps"),
    "elasticface_cos_plus": ("margin_softmax", "auto", "steps"),
    "magface": ("margin_softmax", "auto", "none"),
    "normface": ("margin_softmax", "auto", "none"),
    "softmax": ("margin_softmax", "none", "none"),
    "sphereface": ("margin_softmax", "feature_norm", "steps"),
    "sphereface2": ("binary", "fixed", "none"),
    "sphereface_r": ("own", "fixed", "none"),
    "subcenter_arcface": ("margin_softmax", "auto", "none"),
    "uniface": ("binary", "fixed", "none"),
}


@pytest.mark.parametrize("name", list_heads())
def test_every_head_declares_its_traits(name):
    cls = head_class(name)
    assert (cls.loss_kind, cls.scale_policy, cls.state) == TRAITS[name]
    assert cls.shardable and cls.seeded_centres


def test_a_value_outside_the_set_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="scale_policy must be one of"):

        class Odd(MarginHead):
            scale_policy = "large"


def test_what_follows_from_the_methods_is_found_once():
    class Own(MarginHead):
        def loss_over(self, shard):
            return super().loss_over(shard)

        def update_state(self, cos_y: Tensor, norms: Tensor) -> None:
            pass

        def loss(self, embeddings, labels, **kw):
            return super().loss(embeddings, labels, **kw)

        def reset_parameters(self) -> None:
            super().reset_parameters()

    class NoScale(MarginHead):
        def __init__(self, embedding_size: int, num_classes: int, s: float | None = None):
            super().__init__(embedding_size, num_classes, s=1.0 if s is None else s)

    assert (Own.loss_kind, Own.state, Own.scale_policy) == ("own", "steps", "auto")
    assert not Own.shardable and not Own.seeded_centres
    assert NoScale.scale_policy == "own"
