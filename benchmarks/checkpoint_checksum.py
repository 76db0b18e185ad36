"""What the checkpoint checksum costs: saving and loading a training checkpoint with the sha256
of its contents (``training.checkpoint.save_checkpoint`` / ``load_checkpoint``) against the
same payload written and read by ``torch.save`` / ``torch.load`` alone.

The payload is that of a real run's checkpoint: an iResNet backbone, its SGD momentum buffers
and an ArcFace head of ``--classes`` x 512 (fp32), in a temporary folder (page cache, so this
measures the hashing, not the disk). Prints the medians of ``--repeats`` runs side by side::

    python benchmarks/checkpoint_checksum.py [--backbone iresnet50] [--classes 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import marginface
from marginface.files import atomic_torch_save
from marginface.training import checkpoint as ckpt


def payload(backbone: str, classes: int) -> dict:
    net = marginface.create_backbone(backbone, embedding_size=512)
    head = marginface.create_head("arcface", 512, classes)
    params = [*net.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates the momentum buffers
    return {
        "backbone": net.state_dict(),
        "head": head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {},
        "rng": ckpt.capture_rng(),
        "position": {"epoch": 0, "batch": 0, "step": 1, "seed": 0},
        "config": {},
    }


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    blob = payload(args.backbone, args.classes)
    with tempfile.TemporaryDirectory() as tmp:
        plain, checked = Path(tmp) / "plain.pt", Path(tmp) / "checked.pt"
        t_save = median_time(lambda: atomic_torch_save({"format": 1, **blob}, plain), args.repeats)
        t_save_c = median_time(lambda: ckpt.save_checkpoint(checked, blob), args.repeats)
        t_load = median_time(lambda: torch.load(plain, weights_only=True), args.repeats)
        t_load_c = median_time(lambda: ckpt.load_checkpoint(checked), args.repeats)
        t_digest = median_time(lambda: ckpt.payload_digest(blob), args.repeats)
        size = checked.stat().st_size / 1e6
    print(f"checkpoint of {args.backbone} + arcface {args.classes}x512 + SGD momentum: "
          f"{size:.0f} MB (median of {args.repeats})")  # fmt: skip
    print(f"{'':8s} {'plain s':>9s} {'checksum s':>11s} {'ratio':>6s}")
    print(f"{'save':8s} {t_save:9.3f} {t_save_c:11.3f} {t_save_c / t_save:6.2f}")
    print(f"{'load':8s} {t_load:9.3f} {t_load_c:11.3f} {t_load_c / t_load:6.2f}")
    print(f"sha256 of the payload alone: {t_digest:.3f} s ({size / t_digest:.0f} MB/s)")


if __name__ == "__main__":
    main()
