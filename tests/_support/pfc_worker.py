"""One rank of the multi-process PartialFC tests (run as a script, torchrun-style env vars).

    RANK=r WORLD_SIZE=w MASTER_ADDR=127.0.0.1 MASTER_PORT=p python pfc_worker.py OUT_DIR

Runs every case of :data:`CASES` (sharded loss and gradients), the error cases and a few
sampled SGD steps, and writes ``OUT_DIR/rank{r}.pt``.  The test (``test_distributed.py``)
imports this file for the case list and the head factory, and builds the single-process
reference from rank 0's inputs.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import timedelta

import torch

from marginface.heads import create_head

D, C, B = 8, 37, 3  # C is not a multiple of 2 or 3: uneven shards


# (name, hparams, sample_rate): the heads of the task and the later hook-based ones
CASES = [
    ("arcface", {}, 1.0),
    ("arcface", {}, 0.3),
    ("cosface", {"s": 30.0}, 1.0),
    ("cosface", {"s": 30.0}, 0.5),
    ("sphereface", {}, 1.0),
    ("sphereface", {}, 0.3),
    ("softmax", {}, 1.0),
    ("softmax", {}, 0.3),
    ("subcenter_arcface", {"k": 2}, 1.0),
    ("subcenter_arcface", {"k": 2}, 0.3),
    ("curricularface", {}, 1.0),
    ("curricularface", {}, 0.5),
    ("adaface", {}, 1.0),
    ("magface", {}, 1.0),
    ("magface", {}, 0.3),
    ("elasticface_cos_plus", {"seed": 3}, 1.0),
    ("sphereface_r", {"version": "v1"}, 1.0),
    ("sphereface_r", {"version": "v2"}, 1.0),
    ("sphereface_r", {"version": "v2"}, 0.3),
    ("sphereface2", {}, 1.0),
    ("sphereface2", {"variant": "A"}, 0.3),
    ("uniface", {}, 1.0),
    ("uniface", {}, 0.3),
    ("adacos", {"dynamic": True}, 1.0),
    ("adacos", {}, 0.3),
]


def make_head(name: str, num_classes: int, **hp):
    return create_head(name, D, num_classes, **hp)


def case_inputs(i: int, world: int):
    """Full head, global embeddings (W*B, D) and labels of case ``i`` (same on every rank).

    In float64: the sharded sums run in another order than one process's, and in float32 that
    order alone moves a gradient element of a head with s=64 by ~1e-5 (seen).
    """
    name, hp, _ = CASES[i]
    torch.manual_seed(1000 + i)
    head = make_head(name, C, **hp).double()
    x = torch.randn(world * B, D, dtype=torch.float64) * 6.0  # norms ~17: MagFace's [10, 110]
    y = torch.randint(0, C, (world * B,))
    return head, x, y


def run_cases(rank: int, world: int) -> list[dict]:
    from marginface.parallel import PartialFC

    out = []
    for i, (_name, _hp, rate) in enumerate(CASES):
        head, x, y = case_inputs(i, world)
        head_state = {k: v.clone() for k, v in head.state_dict().items()}
        pfc = PartialFC(head, sample_rate=rate, seed=11).double().train()
        xl = x[rank * B : (rank + 1) * B].clone().requires_grad_(True)
        loss = pfc(xl, y[rank * B : (rank + 1) * B])
        loss.backward()
        src = pfc.active if rate < 1 else pfc.head
        out.append(
            {
                "loss": loss.detach(),
                "x_grad": xl.grad,
                "range": (pfc.class_start, pfc.class_end),
                "sampled": pfc.sampled_classes,
                "w_grad": src.weight.grad,
                "b_grad": None if getattr(src, "bias", None) is None else src.bias.grad,
                "head_state": head_state,
                "x": x,
                "y": y,
                "replicated_grads": {
                    n: p.grad for n, p in pfc.head.named_parameters() if n not in pfc.class_keys
                },
                "after": {
                    k: v for k, v in pfc.head.state_dict().items() if k not in pfc.class_keys
                },
            }
        )
    return out


def run_tiny(rank: int, world: int) -> dict:
    """Two classes over 2 or 3 ranks (rank 2 of 3 holds none)."""
    from marginface.parallel import PartialFC

    torch.manual_seed(5)
    head = create_head("cosface", D, 2)
    x, y = torch.randn(world * B, D), torch.randint(0, 2, (world * B,))
    pfc = PartialFC(head)
    xl = x[rank * B : (rank + 1) * B].clone().requires_grad_(True)
    loss = pfc(xl, y[rank * B : (rank + 1) * B])
    loss.backward()
    torch.manual_seed(rank)  # an unseeded ElasticFace draws its own state on each rank
    elastic = PartialFC("elasticface_arc", D, C).head.rng_state
    return {
        "elastic_rng": elastic,
        "loss": loss.detach(),
        "x_grad": xl.grad,
        "w_grad": pfc.head.weight.grad,
        "range": (pfc.class_start, pfc.class_end),
        "x": x,
        "y": y,
        "weight": head.weight.detach().clone(),
    }


def run_errors(rank: int, world: int) -> dict[str, str]:
    from marginface.parallel import PartialFC

    pfc = PartialFC("cosface", D, C)
    msgs = {}
    for label, b, lo in (("batch", B + rank, 0), ("labels", B, -rank)):
        try:
            pfc(torch.randn(b, D), torch.arange(lo, lo + b))
            msgs[label] = "no error"
        except ValueError as e:
            msgs[label] = str(e)
    return msgs


def run_training(rank: int, world: int) -> dict:
    """Three sampled SGD-momentum steps; unsampled rows must stay bit-identical."""
    from marginface.parallel import PartialFC

    torch.manual_seed(7)
    pfc = PartialFC("arcface", D, C, sample_rate=0.3, seed=3)
    opt = torch.optim.SGD(pfc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    pfc.attach_optimizer(opt)
    untouched = True
    for _ in range(3):
        x, y = torch.randn(world * B, D), torch.randint(0, C, (world * B,))
        w0 = pfc.head.weight.detach().clone()
        m0 = {k: v.clone() for k, v in pfc.row_state["weight"].items()}
        loss = pfc(x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B])
        loss.backward()
        opt.step()
        opt.zero_grad()
        keep = torch.ones(w0.shape[0], dtype=torch.bool)
        keep[pfc.sampled_classes - pfc.class_start] = False
        untouched &= torch.equal(pfc.head.weight[keep], w0[keep])
        untouched &= not torch.equal(pfc.head.weight[~keep], w0[~keep])
        for k, m in m0.items():
            untouched &= torch.equal(pfc.row_state["weight"][k][keep], m[keep])
    full = pfc.full_state_dict()
    return {"untouched": untouched, "state": pfc.state_dict(), "full": full}


def main() -> None:
    import torch.distributed as dist

    out_dir = sys.argv[1]
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        result = {
            "cases": run_cases(rank, world),
            "errors": run_errors(rank, world),
            "tiny": run_tiny(rank, world),
            # an optimizer's first construction imports torch._dynamo (seconds): 3 ranks only
            "training": run_training(rank, world) if world == 3 else None,
        }
    except Exception:
        result = {"crash": traceback.format_exc()}
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
