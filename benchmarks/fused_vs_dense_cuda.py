"""Forward + backward time and peak memory growth of ArcFace's fused loss against the plain dense
loss on one CUDA device, at B = D = 512, C = 100,000: the figures docs/heads.md quotes.

    python benchmarks/fused_vs_dense_cuda.py

``plain`` is ``cross_entropy(linear(normalize(x), normalize(W)) * 64)`` (the (B, C) logits);
``fused`` is ``head.loss`` with its defaults (the path ``marginface.heads.choose_path`` picks).
Each is run once to warm up, then timed over 10 steps; the peak is
``torch.cuda.max_memory_allocated`` over those steps less what was allocated before them.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import marginface


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("fused_vs_dense_cuda.py needs a CUDA device")
    b, d, c = 512, 512, 100_000
    x = torch.randn(b, d, device="cuda", requires_grad=True)
    y = torch.randint(0, c, (b,), device="cuda")
    head = marginface.create_head("arcface", d, c).cuda()

    def plain():
        F.cross_entropy(F.linear(F.normalize(x), F.normalize(head.weight)) * 64, y).backward()

    def fused():
        head.loss(x, y).backward()

    print(f"{torch.cuda.get_device_name()}, B={b}, D={d}, C={c:,}")
    for name, fn in (("plain", plain), ("fused", fused)):
        fn()
        x.grad = head.weight.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
            x.grad = head.weight.grad = None
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 100
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        print(f"{name}: {ms:.2f} ms per forward+backward, peak growth {peak:.0f} MiB")


if __name__ == "__main__":
    main()
