"""PartialFC in one process (process_group="local" and simulated shards): no gloo needed."""

from __future__ import annotations

import copy

import pytest
import torch

from marginface.heads import adacos_scale, create_head, list_heads
from marginface.parallel import (
    PartialFC,
    gather_full_state,
    num_samples,
    reshard_state_dicts,
    shard_range,
    shard_ranges,
)

D, C = 8, 23


@pytest.mark.parametrize("name", list_heads())
def test_world_size_one_equals_head_loss(name):
    torch.manual_seed(0)
    hp = {"seed": 1} if name.startswith("elasticface") else {}
    head = create_head(name, D, C, **hp).train()
    pfc = PartialFC(head, process_group="local").train()
    x = (torch.randn(5, D) * 6).requires_grad_(True)
    y = torch.randint(0, C, (5,))
    xr = x.detach().clone().requires_grad_(True)
    loss = pfc(x, y)
    ref = head.loss(xr, y)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pfc.head.weight.grad, head.weight.grad, rtol=1e-5, atol=1e-5)


def test_unsupported_head_and_missing_group_are_clear_errors():
    class Odd(type(create_head("cosface", D, 2))):
        def loss(self, embeddings, labels, **kw):
            return super().loss(embeddings, labels, **kw) * 2

    with pytest.raises(ValueError, match="cannot shard head"):
        PartialFC(Odd(D, C), process_group="local")
    with pytest.raises(ValueError, match="torchrun"):
        PartialFC("arcface", D, C)  # no process group initialised in this process
    with pytest.raises(ValueError, match="sample_rate"):
        PartialFC("arcface", D, C, sample_rate=0.0, process_group="local")


@pytest.mark.parametrize("name", ["sphereface2", "uniface"])
def test_class_count_dependent_bias_is_that_of_all_classes(name):
    shard = PartialFC(name, D, 1000, process_group="local", shard=(1, 4))
    torch.testing.assert_close(shard.head.bias, create_head(name, D, 1000).bias)


def test_shard_ranges_tile_any_c_and_world_size():
    for c in (1, 2, 7, 23, 1000):
        for w in (1, 2, 3, 8):
            ranges = shard_ranges(c, w)
            assert ranges[0][0] == 0 and ranges[-1][1] == c
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
            sizes = [e - s for s, e in ranges]
            assert max(sizes) - min(sizes) <= 1
    assert shard_range(2, 3, 2) == (2, 2)  # fewer classes than ranks: an empty shard


def test_init_does_not_depend_on_the_world_size():
    one = PartialFC("arcface", D, C, process_group="local", seed=4).head.weight
    for w in (2, 3, 5):
        parts = [
            PartialFC("arcface", D, C, process_group="local", seed=4, shard=(r, w))
            for r in range(w)
        ]
        torch.testing.assert_close(torch.cat([p.head.weight for p in parts]), one, rtol=0, atol=0)
    bound = (6 / (D + C)) ** 0.5
    assert one.abs().max() <= bound


def _sampled_pfc(**kw) -> tuple[PartialFC, torch.optim.Optimizer]:
    torch.manual_seed(0)
    pfc = PartialFC("softmax", D, C, sample_rate=0.25, process_group="local", seed=2, **kw)
    opt = torch.optim.SGD(pfc.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    pfc.attach_optimizer(opt)
    return pfc, opt


def test_sgd_momentum_leaves_unsampled_rows_bit_identical():
    pfc, opt = _sampled_pfc()
    assert pfc.num_sample == num_samples(0.25, C) == 6
    for step in range(4):
        x, y = torch.randn(4, D), torch.randint(0, C, (4,))
        before = {k: v.clone() for k, v in pfc.head.state_dict().items()}
        mom = {k: {n: t.clone() for n, t in d.items()} for k, d in pfc.row_state.items()}
        pfc(x, y).backward()
        assert pfc.head.weight.grad is None and pfc.head.bias.grad is None  # no dense C x D
        assert pfc.active.weight.grad.shape == (6, D)
        opt.step()
        opt.zero_grad()
        picked = pfc.sampled_classes
        assert torch.isin(torch.unique(y), picked).all()
        keep = torch.ones(C, dtype=torch.bool)
        keep[picked] = False
        for key in ("weight", "bias"):
            new = pfc.head.state_dict()[key]
            assert torch.equal(new[keep], before[key][keep])
            assert not torch.equal(new[~keep], before[key][~keep])
            buf = pfc.row_state[key]["momentum_buffer"]
            assert buf.shape[0] == C
            if step:
                assert torch.equal(buf[keep], mom[key]["momentum_buffer"][keep])
            assert buf[~keep].abs().sum() > 0


def test_sampled_step_matches_a_dense_step_on_the_sampled_rows():
    """One sampled SGD step == a plain SGD step of a head holding only the sampled classes."""
    pfc, opt = _sampled_pfc()
    w0, b0 = pfc.head.weight.detach().clone(), pfc.head.bias.detach().clone()
    x, y = torch.randn(4, D), torch.randint(0, C, (4,))
    pfc(x, y).backward()
    opt.step()
    picked = pfc.sampled_classes
    ref = create_head("softmax", D, len(picked))
    ref.load_state_dict({"weight": w0[picked], "bias": b0[picked]})
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    ref.loss(x, torch.searchsorted(picked, y)).backward()
    ref_opt.step()
    torch.testing.assert_close(pfc.head.weight[picked], ref.weight)
    torch.testing.assert_close(pfc.head.bias[picked], ref.bias)


def test_sampling_generator_state_round_trip_and_reshard():
    pfc, opt = _sampled_pfc()
    x, y = torch.randn(4, D), torch.randint(0, C, (4,))
    pfc(x, y).backward()
    opt.step()
    opt.zero_grad()
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in pfc.state_dict().items()}
    pfc(x, y)
    expected = pfc.sampled_classes.clone()
    other, _ = _sampled_pfc()
    other.load_state_dict(state)
    other(x, y)
    assert torch.equal(other.sampled_classes, expected)
    assert other.step == 2
    # one rank's state does not load into another sharding
    shard = PartialFC("softmax", D, C, sample_rate=0.25, process_group="local", shard=(1, 2))
    with pytest.raises(ValueError, match="re-shard"):
        shard.load_state_dict(state)
    # re-shard 1 -> 2 -> 3 ranks and back: nothing lost
    two = reshard_state_dicts([state], 2)
    shard.load_state_dict(two[1])
    three = reshard_state_dicts(two, 3)
    back = gather_full_state(three)
    torch.testing.assert_close(back["head.weight"], state["head.weight"], rtol=0, atol=0)
    mom = state["_extra_state"]["row_state"]["weight"]["momentum_buffer"]
    torch.testing.assert_close(
        back["_extra_state"]["row_state"]["weight"]["momentum_buffer"], mom, rtol=0, atol=0
    )


def test_gradient_accumulation_with_sampling_is_refused():
    pfc, _ = _sampled_pfc()
    x, y = torch.randn(4, D), torch.randint(0, C, (4,))
    pfc(x, y).backward()
    with pytest.raises(ValueError, match="one optimizer step"):
        pfc(x, y)


def test_eval_mode_uses_all_classes():
    pfc, _ = _sampled_pfc()
    pfc.eval()
    x, y = torch.randn(4, D), torch.randint(0, C, (4,))
    head = create_head("softmax", D, C)
    head.load_state_dict(pfc.head.state_dict())
    torch.testing.assert_close(pfc(x, y), head.loss(x, y))


def test_embedding_grad_scale_multiplies_only_the_embedding_gradient():
    x, y = torch.randn(4, D, requires_grad=True), torch.randint(0, C, (4,))
    grads = []
    for scale in (1.0, 3.0):
        pfc = PartialFC("cosface", D, C, process_group="local", embedding_grad_scale=scale)
        pfc(x, y).backward()
        grads.append((x.grad.clone(), pfc.head.weight.grad.clone()))
        x.grad = None
    torch.testing.assert_close(grads[1][0], 3.0 * grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])


def test_adam_state_follows_the_sampled_rows():
    torch.manual_seed(0)
    pfc = PartialFC("arcface", D, C, sample_rate=0.25, process_group="local")
    opt = torch.optim.Adam(pfc.parameters(), lr=0.01)
    pfc.attach_optimizer(opt)
    seen = torch.zeros(C, dtype=torch.bool)
    for _ in range(3):
        x, y = torch.randn(4, D), torch.randint(0, C, (4,))
        before = pfc.head.weight.detach().clone()
        opt.zero_grad()
        pfc(x, y).backward()
        opt.step()
        seen[pfc.sampled_classes] = True
        keep = torch.ones(C, dtype=torch.bool)
        keep[pfc.sampled_classes] = False
        assert torch.equal(pfc.head.weight[keep], before[keep])
    state = pfc.row_state["weight"]
    assert set(state) == {"exp_avg", "exp_avg_sq"}
    assert (state["exp_avg_sq"][seen].sum(1) > 0).all()
    assert (state["exp_avg_sq"][~seen] == 0).all()


def test_adacos_dynamic_scale_follows_the_head_over_steps():
    """World size 1: the dynamic scale, loss and gradients equal the head's, step by step."""
    torch.manual_seed(0)
    head = create_head("adacos", D, C, dynamic=True).double().train()
    pfc = PartialFC(copy.deepcopy(head), process_group="local", chunk_size=5).double().train()
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (head, pfc)]
    for _ in range(3):
        x, y = torch.randn(6, D, dtype=torch.float64) * 3, torch.randint(0, C, (6,))
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        for opt in opts:
            opt.zero_grad()
        loss, ref = pfc(x1, y), head.loss(x2, y)
        loss.backward()
        ref.backward()
        # float64: sums of <= C + B = 29 terms of size <= s < 10 in another order
        torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
        assert pfc.head.s == pytest.approx(head.s, rel=1e-12)
        for opt in opts:
            opt.step()
    assert head.s != adacos_scale(C)


def test_adacos_scale_is_that_of_all_classes_and_sampling_is_refused_when_dynamic():
    for shard in ((1, 4), (4, 5)):  # 250 classes, and a shard of 1 class
        pfc = PartialFC(
            "adacos", D, 1000 if shard[1] == 4 else 5, process_group="local", shard=shard
        )
        assert pfc.head.s == adacos_scale(pfc.num_classes)
    fixed = PartialFC("adacos", D, C, sample_rate=0.5, process_group="local")
    assert fixed.head.s == adacos_scale(C)
    with pytest.raises(ValueError, match="sample_rate=0.5.*dynamic scale"):
        PartialFC("adacos", D, C, sample_rate=0.5, process_group="local", dynamic=True)
