"""create_head / list_heads, hyperparameter validation, state of SphereFace."""

from __future__ import annotations

import pytest
import torch

import marginface
from marginface.heads import head_hparams

FIRST_SIX = {"softmax", "normface", "sphereface", "cosface", "arcface", "combined"}


def test_list_heads_has_the_first_six():
    assert FIRST_SIX <= set(marginface.list_heads())


def test_defaults_follow_the_design_notes():
    assert head_hparams("arcface") == {"s": 64.0, "m": 0.5, "easy_margin": False}
    assert head_hparams("cosface") == {"s": 64.0, "m": 0.35}
    assert head_hparams("normface") == {"s": 64.0}
    assert head_hparams("combined") == {"s": 64.0, "m1": 1.0, "m2": 0.5, "m3": 0.0}
    assert head_hparams("sphereface") == {
        "m": 4,
        "base": 1000.0,
        "gamma": 0.12,
        "power": 1.0,
        "lambda_min": 5.0,
    }


@pytest.mark.parametrize("name", sorted(FIRST_SIX))
def test_weight_shape_and_hparams_round_trip(name):
    head = marginface.create_head(name, 12, 7)
    assert head.weight.shape == (7, 12)
    again = marginface.create_head(name, 12, 7, **head.hparams())
    assert again.hparams() == head.hparams()
    assert name in repr(head) or type(head).__name__ in repr(head)


def test_unknown_head_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown head 'arcfase'; valid heads: .*arcface"):
        marginface.create_head("arcfase", 8, 4)


def test_unknown_hyperparameter_lists_valid_ones():
    pattern = r"unknown hyperparameter\(s\) margin .*valid: s=64.0, m=0.5"
    with pytest.raises(ValueError, match=pattern):
        marginface.create_head("arcface", 8, 4, margin=0.5)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        marginface.create_head("cosface", 8, bad)


def test_sphereface_iteration_is_state_and_advances_only_in_training():
    head = marginface.create_head("sphereface", 6, 4)
    x, y = torch.randn(3, 6), torch.tensor([0, 1, 2])
    assert "iteration" in head.state_dict() and int(head.iteration) == 0
    head(x, y)
    head.loss(x, y)
    assert int(head.iteration) == 2
    head.eval()
    head(x, y)
    head.loss(x, y)
    head(x)
    assert int(head.iteration) == 2
    head.train()
    head(x)  # no labels: inference logits, no step
    assert int(head.iteration) == 2
    state = head.state_dict()
    other = marginface.create_head("sphereface", 6, 4)
    other.load_state_dict(state)
    assert int(other.iteration) == 2 and other.lamb == head.lamb


def test_sphereface_lambda_schedule():
    head = marginface.create_head("sphereface", 6, 4)
    assert head.lamb == pytest.approx(1000.0)
    head.iteration.fill_(10)
    assert head.lamb == pytest.approx(1000.0 / (1 + 0.12 * 10))
    head.iteration.fill_(10_000)
    assert head.lamb == 5.0


def test_lightweight_import():
    import subprocess
    import sys

    code = (
        "import sys, marginface.heads; "
        "bad = [m for m in ('matplotlib', 'sklearn', 'PIL', 'marginface.training') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unregistered_head_knows_its_own_hyperparameters():
    """repr() and hparams() read the class's own constructor, not the registry's entry."""

    class Plain(marginface.heads.MarginHead):
        pass

    assert repr(Plain(3, 4)) == "Plain(embedding_size=3, num_classes=4, s=64.0)"

    class Wider(marginface.heads.ArcFace):  # a subclass with one more hyperparameter
        def __init__(self, embedding_size, num_classes, s=8.0, m=0.2, t=0.5):
            super().__init__(embedding_size, num_classes, s=s, m=m)
            self.t = t

    assert Wider.default_hparams() == {"s": 8.0, "m": 0.2, "t": 0.5}
    assert Wider(3, 4, t=0.25).hparams() == {"s": 8.0, "m": 0.2, "t": 0.25}
    assert "t=0.25" in repr(Wider(3, 4, t=0.25))


def test_variants_are_registry_entries_with_their_own_defaults():
    from marginface.heads import ElasticFaceCosPlus
    from marginface.heads.elasticface import ElasticFace

    assert head_hparams("elasticface_cos_plus") == {"s": 64.0, "m": 0.35, "std": 0.02, "seed": None}
    head = marginface.create_head("elasticface_cos_plus", 4, 5, seed=1)
    assert type(head) is ElasticFaceCosPlus and isinstance(head, ElasticFace)
    assert (head.kind, head.plus, head.head_name) == ("cos", True, "elasticface_cos_plus")
    with pytest.raises(ValueError, match="unknown hyperparameter.*plus"):
        marginface.create_head("elasticface_cos_plus", 4, 5, plus=False)  # fixed by the entry
    again = type(head)(4, 5, **head.hparams())
    assert (again.kind, again.plus, again.std) == ("cos", True, 0.02)
