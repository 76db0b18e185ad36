"""PartialFC on CPU: per-rank classifier memory against world size, step time against sample rate.

    .venv/bin/python benchmarks/partial_fc.py                 # C = 1,000,000, D = 512
    .venv/bin/python benchmarks/partial_fc.py --classes 100000 --steps 2   # quicker

Two measurements, written to ``benchmarks/results/partial_fc.json``:

1. Memory per rank for world sizes 1, 2, 4, 8 (sample rates 1.0 and 0.1).  One process runs
   rank 0's share of the work with a simulated shard (``PartialFC(...,
   process_group="local", shard=(0, W))``): the shard of C / W classes and the global batch
   of W * B rows (B per rank), exactly the computation rank 0 does under torchrun, minus
   the collectives (their buffers are the (W*B, D) gathered embeddings and a few (W*B,)
   vectors, not counted here; the input batch is allocated before the step).
   Reported per rank: parameters, gradients (after backward), optimizer state (SGD
   momentum; with sampling the full-size row state kept by PartialFC plus the sampled
   rows'), and the peak of the bytes torch allocated during one step (forward + backward +
   SGD step) above what was live before it, from the torch profiler's allocator events
   (that peak includes the gradients, which are freed by zero_grad between steps).
2. Time of one classifier step (forward + backward + SGD step, momentum 0.9, weight decay
   5e-4) at world size 1, sample rate 0.1 against 1.0: median of ``--steps`` after one
   warm-up step.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from marginface.parallel import PartialFC

MB = 2**20
RESULTS = Path(__file__).resolve().parent / "results"


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def build(head: str, c: int, d: int, rate: float, world: int):
    """Rank 0 of ``world``: the module, its SGD optimizer (attached)."""
    pfc = PartialFC(head, d, c, sample_rate=rate, process_group="local", shard=(0, world))
    opt = torch.optim.SGD(pfc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    pfc.attach_optimizer(opt)
    return pfc, opt


def batch(n: int, d: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def step(pfc: PartialFC, opt, x: torch.Tensor, y: torch.Tensor, zero: bool = True) -> float:
    loss = pfc(x, y)
    loss.backward()
    opt.step()
    if zero:
        opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def peak_allocated(fn) -> int:
    """Peak of the bytes allocated by torch during ``fn()`` above the level at its start."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        (e.start_ns(), i, e.nbytes())
        for i, e in enumerate(prof.profiler.kineto_results.events())
        if e.name() == "[memory]"
    ]
    level = peak = 0
    for _, _, nbytes in sorted(events):
        level += nbytes
        peak = max(peak, level)
    return peak


def memory_row(head: str, c: int, d: int, b: int, rate: float, world: int) -> dict:
    pfc, opt = build(head, c, d, rate, world)
    x, y = batch(b * world, d, c, seed=world)
    step(pfc, opt, x, y)  # warm-up: creates the optimizer state
    x, y = batch(b * world, d, c, seed=world + 100)
    peak = peak_allocated(functools.partial(step, pfc, opt, x, y, zero=False))
    params = _bytes(p for p in pfc.parameters())
    grads = _bytes(p.grad for p in pfc.parameters())
    state = _bytes(v for s in opt.state.values() for v in s.values())
    state += _bytes(t for d_ in pfc.row_state.values() for t in d_.values())
    opt.zero_grad(set_to_none=True)
    row = {
        "world_size": world,
        "sample_rate": rate,
        "shard_classes": pfc.class_end - pfc.class_start,
        "global_batch": b * world,
        "params_mb": params / MB,
        "grads_mb": grads / MB,
        "optimizer_state_mb": state / MB,
        "step_peak_mb": peak / MB,
        "total_mb": (params + state + peak) / MB,
    }
    del pfc, opt
    gc.collect()
    return row


def time_rate(head: str, c: int, d: int, b: int, rate: float, steps: int) -> dict:
    pfc, opt = build(head, c, d, rate, 1)
    times = []
    for i in range(steps + 1):
        x, y = batch(b, d, c, seed=i)
        t0 = time.perf_counter()
        step(pfc, opt, x, y)
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t0)
    del pfc, opt
    gc.collect()
    return {"sample_rate": rate, "step_s": statistics.median(times), "all_s": times}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head", default="arcface")
    ap.add_argument("--classes", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128, help="embeddings per rank")
    ap.add_argument("--worlds", default="1,2,4,8")
    ap.add_argument("--rates", default="1.0,0.1")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per sample rate")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "partial_fc.json")
    args = ap.parse_args(argv)
    worlds = [int(w) for w in args.worlds.split(",")]
    rates = [float(r) for r in args.rates.split(",")]
    c, d, b = args.classes, args.dim, args.batch
    print(
        f"PartialFC({args.head}) C={c:,} D={d} B={b} per rank, fp32, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )

    memory = []
    if not args.skip_memory:
        print("\nper-rank classifier memory (rank 0's shard, simulated), MiB")
        print(
            f"{'W':>3} {'rate':>5} {'classes':>9} {'params':>8} {'grads':>8} {'optim':>8} "
            f"{'step peak':>10} {'total':>9} {'x W=1':>7}"
        )
        for rate in rates:
            for w in worlds:
                row = memory_row(args.head, c, d, b, rate, w)
                base = next(
                    (
                        m["total_mb"]
                        for m in memory
                        if m["sample_rate"] == rate and m["world_size"] == worlds[0]
                    ),
                    row["total_mb"],
                )
                row["ratio_to_first_world"] = row["total_mb"] / base
                memory.append(row)
                print(
                    f"{w:>3} {rate:>5} {row['shard_classes']:>9,} {row['params_mb']:>8.1f} "
                    f"{row['grads_mb']:>8.1f} {row['optimizer_state_mb']:>8.1f} "
                    f"{row['step_peak_mb']:>10.1f} {row['total_mb']:>9.1f} "
                    f"{row['ratio_to_first_world']:>7.3f}",
                    flush=True,
                )

    print(f"\nclassifier step time at world size 1 (forward + backward + SGD), C={c:,}")
    timing = [time_rate(args.head, c, d, b, r, args.steps) for r in rates]
    ref = timing[0]["step_s"]
    for t in timing:
        t["ratio_to_first_rate"] = t["step_s"] / ref
        print(
            f"  sample_rate {t['sample_rate']:>4}: {t['step_s']:8.3f} s/step "
            f"(x{t['ratio_to_first_rate']:.3f})  steps: "
            + ", ".join(f"{s:.3f}" for s in t["all_s"]),
            flush=True,
        )

    result = {
        "head": args.head,
        "num_classes": c,
        "embedding_size": d,
        "batch_per_rank": b,
        "dtype": "float32",
        "optimizer": "SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)",
        "memory_method": "rank 0 shard simulated in one process; step peak from torch "
        "profiler allocator events",
        "memory": memory,
        "timing": timing,
        "machine": {
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
