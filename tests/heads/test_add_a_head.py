"""The worked example of docs/CONTRACTS.md, "Add a head": a head with a loss of its own.

``SmoothCos`` is CosFace's logits with label smoothing, a loss the margin-softmax hooks cannot
express. It is written once, in ``loss_over(shard)``; ``loss()`` runs it on one process and
PartialFC on each shard, with nothing edited elsewhere. The test registers it, checks it
against PyTorch's label-smoothed cross-entropy, trains a step with ``marginface.training.train``
by name, and runs it through PartialFC.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from marginface.heads import MarginHead, Shard, create_head, register_head
from marginface.heads import registry as head_registry
from marginface.parallel import PartialFC


class SmoothCos(MarginHead):
    """Logits ``s (cos theta_j - m [j = y])``; the loss is their cross-entropy against the
    labels smoothed by ``eps``: ``lse_i - (1 - eps) t_i - eps / C * sum_j l_ij``."""

    def __init__(
        self, embedding_size: int, num_classes: int, s: float = 16.0, m: float = 0.2, eps=0.1
    ) -> None:
        super().__init__(embedding_size, num_classes, s=s)
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must lie in [0, 1), got {eps}")
        self.m, self.eps = float(m), float(eps)

    def margin(self, cos_y: Tensor, norms: Tensor) -> Tensor:  # forward()'s target: CosFace
        return cos_y - self.m

    def loss_from_logits(self, logits: Tensor, labels: Tensor) -> Tensor:  # loss(fused=False)
        return F.cross_entropy(logits, labels, label_smoothing=self.eps)

    def loss_over(self, shard: Shard) -> Tensor:  # loss(), and PartialFC on each shard
        scale = self.row_scale(shard.norms)
        target = shard.own(scale * self.target(shard.cos_y, shard.norms))
        lse = shard.softmax_logsumexp(scale, target)  # all classes, the target in its column
        # the sum of all logits: of the cosines over all classes, the target's replaced
        cosines = shard.sum_over_classes(lambda cos, c0, c1: cos.sum(dim=1))
        total = scale * cosines - shard.own(scale * shard.cos_y) + target
        eps = self.eps
        return (lse - (1.0 - eps) * target - eps / shard.num_classes * total).mean()


@pytest.fixture
def registered(monkeypatch):
    """SmoothCos registered as "smooth_cos" for this test only."""
    monkeypatch.setattr(head_registry, "_HEADS", dict(head_registry._HEADS))
    monkeypatch.setattr(SmoothCos, "head_name", SmoothCos.head_name, raising=False)
    register_head("smooth_cos")(SmoothCos)
    return "smooth_cos"


D, C = 8, 11


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(6, D, generator=g, dtype=torch.float64) * 4, torch.randint(
        0, C, (6,), generator=g
    )


def test_the_loss_is_torch_label_smoothing_and_chunked(registered):
    torch.manual_seed(0)
    head = create_head(registered, D, C, eps=0.2).double()
    assert head.hparams() == {"s": 16.0, "m": 0.2, "eps": 0.2} and "eps=0.2" in repr(head)
    x, y = _batch()
    grads = []
    for loss in (
        lambda x: F.cross_entropy(head(x, y), y, label_smoothing=0.2),  # by hand
        lambda x: head.loss(x, y, fused=False),
        lambda x: head.loss(x, y, chunk_size=3),  # loss_over, in blocks of 3 classes
    ):
        xg = x.clone().requires_grad_(True)
        value = loss(xg)
        grads.append((value, *torch.autograd.grad(value, (xg, head.weight))))
    for got in grads[1:]:
        for a, b in zip(got, grads[0], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_partial_fc_computes_the_same_loss_on_one_process(registered):
    torch.manual_seed(0)
    head = create_head(registered, D, C).double().train()
    pfc = PartialFC(head, process_group="local", chunk_size=4).double()
    x, y = _batch()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss, ref = pfc(x1, y), head.loss(x2, y)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pfc.head.weight.grad, head.weight.grad, rtol=1e-12, atol=1e-12)
    by_name = PartialFC(registered, D, C, process_group="local", eps=0.3)  # built by name
    assert type(by_name.head) is SmoothCos and by_name.head.eps == 0.3


@pytest.mark.parametrize("partial_fc", [False, True])
def test_it_trains_by_name(registered, tmp_path, partial_fc):
    from marginface.training import TrainConfig, train

    cfg = TrainConfig(
        data="synthetic:6x4",
        head=registered,
        head_kwargs={"eps": 0.1},
        backbone="small_cnn",
        image_size=16,
        embedding_size=8,
        batch_size=8,
        epochs=1,
        max_steps=2,
        output=str(tmp_path / "run"),
        progress=False,
        tensorboard=False,
        summary_images=0,
        device="cpu",
        partial_fc=partial_fc,
    )
    result = train(cfg)
    assert result.steps == 2 and all(
        torch.isfinite(torch.tensor(r["loss"])) for r in result.history
    )
    head = result.head.head if partial_fc else result.head  # PartialFC holds the head
    assert isinstance(head, SmoothCos) and head.eps == 0.1
    assert result.scale.rule is not None  # s=auto applied: its target psi(1) = 1 - m
