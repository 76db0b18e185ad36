"""Issue 22, heads API: one batch of NaN (or inf) features must not poison a head's running
statistics (AdaFace's norm mean/std, CurricularFace's t, AdaCos's scale)."""

import warnings

import pytest
import torch

import marginface

D, C, B = 8, 5, 6


def batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, D, generator=g, dtype=torch.float64) * 3 for _ in range(3)]


def labels():
    return torch.arange(B) % C


def head(name):
    torch.manual_seed(0)
    h = marginface.create_head(name, D, C).double()
    h.train()
    return h


def state(h):
    return {k: v.clone() for k, v in h.state_dict().items() if k != "weight"}


def run(h, xs, how):
    """The logits of the last batch, with the per-batch calls done as ``how`` says."""
    out = None
    for x in xs:
        if how == "forward":
            out = h(x, labels())
        else:
            out = h.loss(x, labels())
    return out


@pytest.mark.parametrize("how", ["forward", "loss"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["adaface", "curricularface", "adacos"])
def test_one_non_finite_batch_does_not_poison_the_running_statistics(name, bad, how):
    first, later, last = batches()
    clean = head(name)
    expected = run(clean, [first, later, last], how)
    poisoned = head(name)
    broken = later.clone()
    broken[1, 2] = bad
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(poisoned, [first, broken], how)  # the bad batch: its own output may be NaN
        got = run(poisoned, [later, last], how)
    assert torch.isfinite(got).all()
    # the bad batch is left out: the state is that of a run that saw first, later, last
    for key, value in state(poisoned).items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    replay = head(name)
    run(replay, [first], how)
    reference = run(replay, [later, last], how)
    torch.testing.assert_close(got, reference, rtol=0, atol=0)
    assert torch.isfinite(expected).all()
    if name != "adacos":  # AdaCos's scale rule already ignores a non-finite estimate
        said = [w for w in caught if "running statistics" in str(w.message)]
        assert len(said) == 1 and "said once" in str(said[0].message)


@pytest.mark.parametrize("name", ["adaface", "curricularface"])
def test_warned_once_per_head(name):
    h = head(name)
    broken = batches()[0].clone()
    broken[0, 0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            h(broken, labels())
    assert sum("running statistics" in str(w.message) for w in caught) == 1


def test_finite_batches_still_update_the_statistics():
    h = head("curricularface")
    h(batches()[0], labels())
    assert float(h.t) != 0.0
    a = head("adaface")
    a(batches()[0], labels())
    assert float(a.batch_mean) != 20.0 and float(a.batch_std) != 100.0
