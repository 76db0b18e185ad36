"""Forward+backward time and peak memory growth of every head's loss, side by side.

Each case runs in two fresh subprocesses: one times it with the ordinary allocator, the other
measures its peak memory with glibc's mmap threshold fixed so that freed tensors leave the
resident set and the peak is measurable from /proc/self/status (VmHWM, reset through
/proc/self/clear_refs).  (The fixed threshold turns every large temporary into fresh pages, which
would slow code with many temporaries, so no time is taken from that run.)  Reported as ratios
to the plain ``cross_entropy(linear(normalize(x), normalize(W)) * s)`` measured in the same run,
and to pytorch-metric-learning's ArcFace/CosFace/SphereFace losses when that package is installed.

    python benchmarks/heads.py                       # B=512, D=512, C=100,000 + C=1,000,000 fused
    python benchmarks/heads.py --classes 20000 --big-classes 0 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PML = {
    "pml_arcface": "ArcFaceLoss",
    "pml_cosface": "CosFaceLoss",
    "pml_sphereface": "SphereFaceLoss",
}


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _case(name: str, b: int, d: int, c: int, repeats: int, threads: int) -> dict:
    """Runs inside the subprocess: returns median time and peak memory growth of one case."""
    import torch
    import torch.nn.functional as F

    import marginface

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(b, d, requires_grad=True)
    y = torch.randint(0, c, (b,))
    if name == "plain":
        w = torch.nn.Parameter(torch.empty(c, d).normal_(0, 0.01))
        params = [w]

        def step():
            logits = F.linear(F.normalize(x), F.normalize(w)) * 64.0
            F.cross_entropy(logits, y).backward()
    elif name in PML:
        from pytorch_metric_learning import losses

        kw = {"margin": 4} if name == "pml_sphereface" else {}
        loss_fn = getattr(losses, PML[name])(num_classes=c, embedding_size=d, **kw)
        params = list(loss_fn.parameters())

        def step():
            loss_fn(x, y).backward()
    else:
        head = marginface.create_head(name, d, c)
        params = list(head.parameters())

        def step():
            head.loss(x, y).backward()

    def clear():
        x.grad = None
        for p in params:
            p.grad = None

    step()  # warm-up: thread pools, first-touch of pages
    times, peaks = [], []
    for _ in range(repeats):
        clear()
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set
        before = _status("VmRSS")
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        peaks.append(_status("VmHWM") - before)
    times.sort()
    return {"name": name, "time_s": times[len(times) // 2], "peak_growth_mb": max(peaks) / 2**20}


def _run_case(name: str, args: argparse.Namespace, c: int) -> dict | None:
    timed = _run_one(name, args, c, dict(os.environ))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    measured = _run_one(name, argparse.Namespace(**{**vars(args), "repeats": 1}), c, env)
    if timed is None or measured is None:
        return None
    return {**timed, "peak_growth_mb": measured["peak_growth_mb"]}


def _run_one(name: str, args: argparse.Namespace, c: int, env: dict) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--_case",
        name,
        "--batch",
        str(args.batch),
        "--dim",
        str(args.dim),
        "--classes",
        str(c),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  {name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=100_000)
    p.add_argument(
        "--big-classes",
        type=int,
        default=1_000_000,
        help="also run the fused ArcFace loss at this C (0: skip)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--heads", default="", help="comma-separated heads (default: all registered)")
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "heads.json"))
    p.add_argument("--_case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        print(
            json.dumps(
                _case(args._case, args.batch, args.dim, args.classes, args.repeats, args.threads)
            )
        )
        return

    import marginface

    try:
        import pytorch_metric_learning  # noqa: F401

        pml = list(PML)
    except ImportError:
        pml = []
    heads = args.heads.split(",") if args.heads else marginface.list_heads()
    print(
        f"B={args.batch} D={args.dim} C={args.classes:,} fp32, {args.threads} threads, "
        f"median of {args.repeats}; memory = peak resident growth during forward+backward"
    )
    rows = []
    plain = _run_case("plain", args, args.classes)
    if plain is None:
        raise SystemExit("the plain reference failed")
    for name in ["plain", *pml, *heads]:
        r = plain if name == "plain" else _run_case(name, args, args.classes)
        if r is None:
            continue
        r["classes"] = args.classes
        r["time_ratio"] = r["time_s"] / plain["time_s"]
        r["memory_ratio"] = r["peak_growth_mb"] / max(plain["peak_growth_mb"], 1e-9)
        rows.append(r)
        print(
            f"  {name:<24} {r['time_s']:8.3f} s  x{r['time_ratio']:5.2f}   "
            f"{r['peak_growth_mb']:8.1f} MB  x{r['memory_ratio']:5.2f}",
            flush=True,
        )
    if args.big_classes:
        r = _run_case(
            "arcface", argparse.Namespace(**{**vars(args), "repeats": 1}), args.big_classes
        )
        if r is not None:
            weight_mb = args.big_classes * args.dim * 4 / 2**20
            r.update(classes=args.big_classes, weight_mb=weight_mb)
            rows.append(r)
            print(
                f"  arcface fused at C={args.big_classes:,}: {r['time_s']:.2f} s, peak growth "
                f"{r['peak_growth_mb']:.0f} MB (weight itself {weight_mb:.0f} MB, its grad "
                f"another {weight_mb:.0f} MB)"
            )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"config": vars(args), "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
