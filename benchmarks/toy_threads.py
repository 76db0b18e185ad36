"""The demo's 2-D / 3-D toy stage on 1 vs 2 torch threads, alone or beside busy processes.

The toy (``marginface.demo.toy.train_toy``) trains a 32 -> 128 -> 128 -> dim MLP on 72 images,
800 full-batch steps per head: every operation is tiny, so a step is a few dozen short
OpenMP parallel regions. With more threads than free cores each region waits for a thread
the kernel has descheduled; this script shows how much that costs, and checks that the
toy's numbers do not depend on the thread count (features compared bit for bit)::

    python benchmarks/toy_threads.py                 # alone
    python benchmarks/toy_threads.py --busy 2        # beside two busy-loop processes

Each thread count is timed in interleaved rounds (so a change of the machine's load touches
both); the table gives the median seconds per round and the ratio to 1 thread. Say the
machine's load (``uptime``) with any figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from marginface.demo.cache import render_dataset
from marginface.demo.config import make_config
from marginface.demo.toy import ToySchedule, train_toy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to compare")
    parser.add_argument("--heads", default="softmax,arcface")
    parser.add_argument("--steps", type=int, default=800, help="toy steps per head")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.busy < 0:
        parser.error("--steps and --rounds must be >= 1, --busy >= 0")
    cfg = make_config(quick=True)
    faces = render_dataset(cfg.toy_spec, cfg.image_size, workers=1)
    sched = ToySchedule(steps=args.steps)
    counts = [int(t) for t in args.threads.split(",")]
    heads = args.heads.split(",")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    times: dict[int, list[float]] = {t: [] for t in counts}
    features: dict[int, list[np.ndarray]] = {}
    try:
        time.sleep(0.5 if busy else 0)
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            for t in counts:
                torch.set_num_threads(t)
                t0 = time.perf_counter()
                out = [train_toy(faces, h, None, dim, seed=0, schedule=sched) for h in heads
                       for dim in (2, 3)]  # fmt: skip
                times[t].append(time.perf_counter() - t0)
                features[t] = [r.features for r in out]
    finally:
        for p in busy:
            p.kill()
            p.wait()
    base = statistics.median(times[counts[0]])
    print(
        f"toy stage ({len(heads)} heads x 2-D/3-D, {args.steps} steps each), {args.busy} busy "
        f"process(es) beside it, load average {load:.1f} at start, {os.cpu_count()} cores"
    )
    print("| torch threads | seconds (median of rounds) | ratio to first | same features |")
    print("|---|---|---|---|")
    for t in counts:
        same = all(
            np.array_equal(a, b) for a, b in zip(features[t], features[counts[0]], strict=True)
        )
        med = statistics.median(times[t])
        print(f"| {t} | {med:.2f} | {med / base:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
