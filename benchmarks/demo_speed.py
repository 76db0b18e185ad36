"""The demo's training step on the CPU: which of the machine's offers pay (side by side, one run).

One step is what each of ``marginface demo``'s training runs does per batch: ``small_cnn`` at
the demo's image size and batch, the ArcFace head (s = auto for the demo's classes) with its
fused loss, AdamW; one torch thread per run, as the demo gives each of its two workers on a
2-core machine. Variants (``--variants``):

- ``fp32``: as the demo trains;
- ``channels_last``: model and images in channels-last memory format;
- ``bf16``: the backbone under bfloat16 autocast (the head's loss stays float32);
- ``bf16_channels_last``: both;
- ``compile``: ``torch.compile`` of the backbone (its compile time reported apart).

The variants are timed in interleaved rounds (each round times every variant once), so a
change in the machine's load touches all of them alike; the table gives the median over rounds
and each variant's ratio to ``fp32``. A run of two such processes side by side is the demo's
case: ``--processes 2``::

    python benchmarks/demo_speed.py                 # 1 process, 1 thread
    python benchmarks/demo_speed.py --processes 2   # two at once, as the demo's workers
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

import torch

from marginface.backbones import create_backbone
from marginface.heads import create_head
from marginface.heads.scale import resolve_scale
from marginface.training.optim import build_optimizer

VARIANTS = ("fp32", "channels_last", "bf16", "bf16_channels_last", "compile")


def _step_fn(variant: str, classes: int, batch: int, size: int, embedding: int):
    """A closure running one training step of ``variant``, and its set-up time (s)."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    net = create_backbone("small_cnn", embedding_size=embedding)
    head_kwargs, _ = resolve_scale("arcface", embedding, classes, {})  # s = auto, as the demo
    head = create_head("arcface", embedding, classes, **head_kwargs)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, classes, (batch,))
    channels_last = variant.endswith("channels_last")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    amp = variant.startswith("bf16")
    forward = torch.compile(net) if variant == "compile" else net
    opt = build_optimizer(list(net.parameters()) + list(head.parameters()), "adamw", lr=2e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            emb = forward(images)
        loss = head.loss(emb.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())

    step()  # the first step builds (and for compile: compiles) everything
    return step, time.perf_counter() - t0


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Per-variant seconds per step over interleaved rounds, in this process."""
    torch.set_num_threads(args.threads)
    steps = {}
    setup = {}
    for v in args.variants:
        steps[v], setup[v] = _step_fn(v, args.classes, args.batch_size, args.image_size,
                                      args.embedding_size)  # fmt: skip
    for v in args.variants:  # warm-up
        for _ in range(args.warmup):
            steps[v]()
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for v in args.variants:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[v]()
            times[v].append((time.perf_counter() - t0) / args.steps)
    return {"seconds_per_step": times, "setup_s": setup}


def _worker(args: argparse.Namespace, queue) -> None:
    queue.put(measure(args))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--classes", type=int, default=400, help="identities (the demo's 400)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--processes", type=int, default=1, help="identical processes side by side")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    for flag in ("classes", "batch_size", "image_size", "embedding_size", "threads", "processes",
                 "rounds", "steps"):  # fmt: skip
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if "fp32" not in args.variants:
        args.variants.insert(0, "fp32")
    load = os.getloadavg()[0]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(args, queue)) for _ in range(args.processes)]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    print(
        f"demo training step: small_cnn {args.image_size} px, batch {args.batch_size}, ArcFace "
        f"on {args.classes} classes, AdamW; {args.processes} process(es) x {args.threads} "
        f"thread(s); {args.rounds} interleaved rounds of {args.steps} steps; load average "
        f"{load:.1f} at start; torch {torch.__version__}"
    )
    print("| variant | ms / step (median over rounds, per process) | ratio to fp32 | set-up s |")
    print("|---|---|---|---|")
    rows = {}
    for v in args.variants:
        per_proc = [statistics.median(r["seconds_per_step"][v]) for r in results]
        base = [statistics.median(r["seconds_per_step"]["fp32"]) for r in results]
        ratio = statistics.mean(b / t for b, t in zip(base, per_proc, strict=True))
        setup = max(r["setup_s"][v] for r in results)
        rows[v] = {"ms_per_step": [1000 * t for t in per_proc], "speedup": ratio, "setup_s": setup}
        ms = " / ".join(f"{1000 * t:.1f}" for t in per_proc)
        print(f"| {v} | {ms} | {ratio:.2f}x | {setup:.1f} |", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        out = {"config": vars(args), "load_at_start": load, "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
