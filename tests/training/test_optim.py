"""Optimizers and the per-iteration learning-rate schedule."""

import math

import pytest
import torch

from marginface.training.optim import WarmupDecay, build_optimizer, lr_factor


def test_warmup_then_poly_and_cosine():
    assert [lr_factor(s, 10, 4) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lr_factor(4, 10, 4, "poly", power=2) == 1.0
    assert lr_factor(7, 10, 4, "poly", power=2) == pytest.approx((1 - 3 / 6) ** 2)
    assert lr_factor(7, 10, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(10, 10, 0, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(5, 10, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="unknown scheduler 'step'"):
        lr_factor(5, 10, 0, "step")


def test_scheduler_steps_per_iteration_and_resumes():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([p], "sgd", lr=0.1)
    sched = WarmupDecay(opt, total_steps=8, warmup_steps=2, kind="cosine")
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 / 3) and lrs[2] == pytest.approx(0.1)
    assert lrs[2] > lrs[5] > lrs[7] > 0
    opt2 = build_optimizer([p], "sgd", lr=0.1)
    sched2 = WarmupDecay(opt2, total_steps=8, warmup_steps=2, kind="cosine")
    sched2.load_state_dict({"last_step": 5})
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[5])


def test_optimizers():
    p = torch.nn.Parameter(torch.ones(3))
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    sgd = build_optimizer([p, frozen], "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups[0]["params"]) == 1
    assert sgd.param_groups[0]["momentum"] == 0.9
    adamw = build_optimizer([p], "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer([frozen], "sgd", lr=0.1)
