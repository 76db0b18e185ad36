"""s = auto from the head class: psi(1) read from the class's margin formula with its
hyperparameters and initial state is bit for bit what a new head of it gives."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import marginface
from marginface.heads import MarginHead
from marginface.heads.registry import head_class
from marginface.heads.scale import (
    NOMINAL_NORM,
    SCALE_RULE,
    TARGET_PROBABILITY,
    _scale_rule,
    class_target,
    resolve_scale,
)

AUTO = [h for h in marginface.list_heads() if head_class(h).scale_policy == "auto"]
#: the margin hyperparameters of each kind, changed from their defaults
MARGINS = {"m": 0.27, "m1": 1.5, "m2": 0.31, "m3": 0.05, "l_m": 0.4, "u_m": 0.75, "h": 0.5}
#: numbers given as int, as a config may
WHOLE = {"m": 1, "m1": 2, "m2": 0, "m3": 0, "l_a": 5, "u_a": 100, "h": 1}


def _changed(name: str, values: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if k in head_class(name).default_hparams()}


def _by_a_head(name: str, hparams: dict[str, object], cos: Tensor) -> Tensor:
    """psi(cos) the way s = auto read it from a built head: 3 classes of width 1, built
    without drawing from the global RNG, whole margin, eval mode, float64."""
    with torch.random.fork_rng(devices=[]):
        head = head_class(name)(1, 3, **hparams)
    head.margin_weight = 1.0
    head = head.eval().double()
    c = cos.to(torch.float64).reshape(-1)
    with torch.no_grad():
        return head.margin(c, torch.full_like(c, NOMINAL_NORM)).reshape(cos.shape)


def test_every_auto_head_is_read_from_its_class():
    assert {"arcface", "cosface", "adaface", "magface", "elasticface_cos_plus"} <= set(AUTO)
    assert all(head_class(h).margin_from_class for h in AUTO)


@pytest.mark.parametrize("values", [{}, MARGINS, WHOLE], ids=["defaults", "margin", "ints"])
@pytest.mark.parametrize("name", AUTO)
def test_the_class_gives_the_built_heads_psi_bit_for_bit(name, values):
    hparams = _changed(name, values)
    if values and not hparams and name != "normface":
        pytest.fail(f"{name}: no margin hyperparameter changed")
    cos = torch.cat([torch.ones(1), torch.linspace(-1, 1, 201, dtype=torch.float64)])
    expected = _by_a_head(name, hparams, cos)
    got = class_target(head_class(name), hparams, cos)
    assert got.dtype == torch.float64
    assert torch.equal(got, expected)


@pytest.mark.parametrize("values", [{}, MARGINS], ids=["defaults", "margin"])
@pytest.mark.parametrize("name", AUTO)
@pytest.mark.parametrize("classes", [2, 299, 100_000])
def test_resolve_scale_is_the_built_heads_scale(name, values, classes):
    hparams = _changed(name, values)
    kwargs, choice = resolve_scale(name, 16, classes, hparams)
    psi1 = float(_by_a_head(name, hparams, torch.ones(1)))
    expected = round(_scale_rule(name, psi1, classes, TARGET_PROBABILITY), 4)
    assert kwargs == {**hparams, "s": expected}
    assert choice.value == expected and choice.rule == SCALE_RULE


def test_a_margin_without_a_class_formula_is_read_from_a_small_head():
    class Halved(MarginHead):  # replaces margin() only: the class cannot answer for it
        def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
            return cos_y * 0.5

    assert Halved.scale_policy == "auto" and not Halved.margin_from_class
    assert float(class_target(Halved, {}, torch.ones(1))) == 0.5
    assert head_class("normface").margin_from_class  # identity: neither replaced

    class HalvedArc(head_class("arcface")):  # margin() replaced, margin_of inherited
        def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:
            return cos_y * 0.5

    assert not HalvedArc.margin_from_class
    assert float(class_target(HalvedArc, {}, torch.ones(1))) == 0.5


def test_the_initial_state_is_what_a_new_head_holds():
    for name in ("adaface", "curricularface"):
        head = marginface.create_head(name, 4, 3)
        for key, value in head_class(name).initial_state().items():
            assert torch.equal(getattr(head, key), value)
            assert getattr(head, key).dtype == value.dtype
