"""Shared checks for the heads of issue 9, independent of marginface's implementation.

Only generic plumbing lives here (cosines by hand, state snapshots, the generic checks every
head must pass); each head's formula is written out in its own test file.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import marginface


def cosines(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, C) cosines by hand, float64."""
    x, w = x.double(), w.double()
    return (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).t()


def make(name: str, d: int = 12, c: int = 7, **hp) -> torch.nn.Module:
    torch.manual_seed(0)
    return marginface.create_head(name, d, c, **hp).double()


def batch(d: int = 12, c: int = 7, b: int = 6, scale: float = 1.0, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, dtype=torch.float64, generator=g) * scale
    y = torch.randint(0, c, (b,), generator=g)
    return x, y


def snapshot(head):
    return copy.deepcopy(head.state_dict())


def grads(fn, tensors):
    out = fn()
    return out, torch.autograd.grad(out, tensors, allow_unused=True)


def params(head, x):
    ps = [x, head.weight]
    if getattr(head, "bias", None) is not None:
        ps.append(head.bias)
    return ps


def check_fused_equals_dense(head, x, y, *, reference_loss=None, chunk_size=3):
    """head.loss (fused, in chunks) == the dense loss from forward (values and gradients),
    with the head's state restored between the calls (stateful heads see the same state)."""
    x = x.clone().requires_grad_(True)
    state = snapshot(head)
    ps = params(head, x)
    fused, g1 = grads(lambda: head.loss(x, y, chunk_size=chunk_size), ps)
    after = snapshot(head)
    head.load_state_dict(state)
    if reference_loss is None:

        def reference_loss(h, xx, yy):
            return F.cross_entropy(h(xx, yy), yy)

    dense, g2 = grads(lambda: reference_loss(head, x, y), ps)
    fused, dense = float(fused.detach()), float(dense.detach())
    assert abs(fused - dense) <= 1e-10 * max(1.0, abs(dense))
    for a, b in zip(g1, g2, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10), (a - b).abs().max()
    for k, v in snapshot(head).items():  # the dense call moved the state the same way
        assert torch.equal(v, after[k]), k


def check_edge_cases(head, *, fused_values=(True, False)):
    """Embeddings exactly on (and opposite) their class centre: finite loss and gradients."""
    y = torch.tensor([0, 1, 2, 3])
    k = getattr(head, "subcenters", 1)
    for sign in (1.0, -1.0):
        for fused in fused_values:
            state = snapshot(head)
            x = (sign * 2.5 * head.weight.detach()[y * k]).clone().requires_grad_(True)
            head.zero_grad()
            loss = head.loss(x, y, fused=fused)
            loss.backward()
            head.load_state_dict(state)
            assert torch.isfinite(loss), (sign, fused)
            assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def check_bf16_autocast(name: str, **hp):
    torch.manual_seed(0)
    head = marginface.create_head(name, 16, 9, **hp)
    x = torch.randn(5, 16) * 10
    y = torch.tensor([0, 1, 2, 3, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x.bfloat16(), y)
        plain = head(x.bfloat16())
        loss = head.loss(x.bfloat16(), y)
    assert logits.dtype == torch.float32 and plain.dtype == torch.float32
    assert torch.isfinite(logits).all() and torch.isfinite(plain).all() and torch.isfinite(loss)


def check_defaults_and_roundtrip(name: str, expected: dict):
    assert marginface.heads.head_hparams(name) == expected
    head = marginface.create_head(name, 8, 5)
    again = marginface.create_head(name, 8, 5, **head.hparams())
    assert again.hparams() == head.hparams()
    x = torch.randn(3, 8)
    y = torch.tensor([0, 1, 4])
    assert head(x, y).shape == (3, 5) and head(x).shape == (3, 5)
    assert torch.isfinite(head.loss(x, y))
    # save / restore: a fresh head loaded from the state dict continues identically
    state = copy.deepcopy(head.state_dict())
    other = marginface.create_head(name, 8, 5, **head.hparams())
    other.load_state_dict(state)
    for h in (head, other):  # one more training call each, from the same state
        h.train()
    assert torch.equal(head(x * 7, y), other(x * 7, y))
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in head.state_dict().items())
