"""Training throughput (images/s) of backbones with a margin head, fp32 vs bf16 autocast.

One training step is what ``marginface train`` does per batch: backbone forward under autocast,
the head's fused float32 loss, backward, SGD step. Data loading is excluded (a fixed random
batch stays in memory); warm-up steps are not timed. Prints one table, the precisions side by
side::

    python benchmarks/train_throughput.py                      # CPU: small_cnn, iresnet18
    python benchmarks/train_throughput.py --device cuda --backbones iresnet50 --amp none bf16 fp16
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from marginface.backbones import create_backbone
from marginface.heads import create_head
from marginface.training import TrainModule
from marginface.training.optim import build_optimizer

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    backbone: str,
    amp: str,
    batch_size: int,
    image_size: int,
    classes: int,
    steps: int,
    warmup: int,
    device: torch.device,
) -> float:
    """Images per second of ``steps`` timed training steps (after ``warmup`` untimed ones)."""
    torch.manual_seed(0)
    net = create_backbone(backbone, embedding_size=512, input_size=image_size)
    head = create_head("arcface", 512, classes)
    model = TrainModule(net, head, AMP[amp]).to(device).train()
    opt = build_optimizer(model.parameters(), "sgd", lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    labels = torch.randint(0, classes, (batch_size,), device=device)

    def step() -> None:
        loss = model(images, labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch_size * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=["small_cnn", "iresnet18"])
    p.add_argument("--amp", nargs="+", default=["none", "bf16"], choices=list(AMP))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--classes", type=int, default=1000, help="identities of the ArcFace head")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        load = os.getloadavg()[0]
        where = f"CPU, {torch.get_num_threads()} threads, load average {load:.1f} at start"
    print(
        f"training throughput, images/s: batch {args.batch_size}, {args.image_size}x"
        f"{args.image_size}, ArcFace head ({args.classes} classes, D 512), SGD; "
        f"{args.warmup} warm-up + {args.steps} timed steps; {where}; torch {torch.__version__}"
    )
    header = "| backbone | " + " | ".join(f"{a} img/s" for a in args.amp)
    if len(args.amp) > 1:
        header += " | " + " | ".join(f"{a} / {args.amp[0]}" for a in args.amp[1:])
    print(header + " |")
    print("|" + "---|" * (header.count("|")))
    for name in args.backbones:
        rates = [
            throughput(
                name,
                amp,
                args.batch_size,
                args.image_size,
                args.classes,
                args.steps,
                args.warmup,
                device,
            )
            for amp in args.amp
        ]
        row = f"| {name} | " + " | ".join(f"{r:.1f}" for r in rates)
        if len(rates) > 1:
            row += " | " + " | ".join(f"{r / rates[0]:.2f}x" for r in rates[1:])
        print(row + " |", flush=True)


if __name__ == "__main__":
    main()
