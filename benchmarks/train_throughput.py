"""Training throughput (images/s) of backbones with a margin head, fp32 vs bf16 autocast.

One training step is what ``marginface train`` does per batch: backbone forward under autocast,
the head's fused float32 loss (the path ``marginface.heads.choose_path`` picks: the chunked
PyTorch code, or the Triton kernel on CUDA with ``MARGINFACE_FUSED_PATH=triton``), backward, SGD
step, and the loss read back to the host (the training loop does, for its log). Left out: data
loading (a fixed random batch stays in memory), the learning-rate schedule and the loop's
per-step check that every weight is finite. Warm-up steps are not timed. Prints one table, the
precisions side by side::

    python benchmarks/train_throughput.py                      # CPU: small_cnn, iresnet18
    python benchmarks/train_throughput.py --device cuda --backbones iresnet50 --amp none bf16 fp16

Setups (``--setups``): ``plain`` (the ArcFace head, replicated), ``pfc`` (marginface's
PartialFC with one process, at each ``--sample-rates``) and ``insightface`` (InsightFace's own
``recognition/arcface_torch``: its iResNet + ``PartialFC_V2`` + ``CombinedMarginLoss(64, 1, 0.5,
0)`` step as its ``train_v2.py`` takes it, backbone gradients clipped at norm 5, at each sample
rate, on the same tensors). The InsightFace code is imported from ``--insightface PATH`` (a copy
of that folder outside this project; never part of it). Its backbone calls
``torch.cuda.amp.autocast(self.fp16)``, which knows float16 only: here that call is redirected
to ``torch.autocast`` with the ``--amp`` dtype, so both sides compute in the same precision;
its PartialFC_V2 computes the logits in float32 (``fp16=False``, as ``train_v2.py`` builds
it). The issue-15 comparison (on a GPU)::

    python benchmarks/train_throughput.py --device cuda --backbones iresnet50 --amp bf16 \\
        --batch-size 128 512 --classes 93431 --setups plain pfc insightface \\
        --sample-rates 1.0 0.2 --insightface /path/to/insightface/recognition/arcface_torch \\
        --steps 20 --warmup 5 --json benchmarks/results/train_throughput_gpu.json

``--device cuda`` without CUDA stops with a one-line message. ``--smoke`` runs the same code on
the CPU at batch 2 (InsightFace's hard-coded ``.cuda()`` calls then leave tensors where they
are): it checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch

from marginface.backbones import create_backbone
from marginface.heads import choose_path, create_head
from marginface.training import TrainModule
from marginface.training.classifier import ReplicatedHead
from marginface.training.optim import build_optimizer

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: InsightFace's names of the backbones (``backbones.get_model``)
INSIGHTFACE_NAMES = {
    "iresnet18": "r18",
    "iresnet34": "r34",
    "iresnet50": "r50",
    "iresnet100": "r100",
}
SETUPS = ("plain", "pfc", "insightface")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, steps: int, warmup: int, batch_size: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch_size * steps / (time.perf_counter() - t0)


def throughput(
    backbone: str,
    amp: str,
    batch_size: int,
    image_size: int,
    classes: int,
    steps: int,
    warmup: int,
    device: torch.device,
    sample_rate: float | None = None,
) -> float:
    """Images per second of ``steps`` timed marginface training steps (after ``warmup``
    untimed ones): the plain ArcFace head, or PartialFC at ``sample_rate``."""
    torch.manual_seed(0)
    net = create_backbone(backbone, embedding_size=512, input_size=image_size)
    if sample_rate is None:  # the trainer's classifier interface: forward gives the loss
        head = ReplicatedHead(create_head("arcface", 512, classes))
    else:
        from marginface.parallel import PartialFC

        head = PartialFC("arcface", 512, classes, sample_rate=sample_rate, process_group="local")
    model = TrainModule(net, head, AMP[amp]).to(device).train()
    opt = build_optimizer(model.parameters(), "sgd", lr=0.1)
    model.head.attach_optimizer(opt)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    labels = torch.randint(0, classes, (batch_size,), device=device)

    def step() -> None:
        loss = model(images, labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # the loop reads every step's loss back for its log

    return _timed(step, steps, warmup, batch_size, device)


# ----------------------------------------------------------------------------- InsightFace
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_process_group(device: torch.device) -> None:
    """InsightFace's PartialFC_V2 needs torch.distributed: one process, this machine."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            init_method=f"tcp://127.0.0.1:{_free_port()}",
            rank=0,
            world_size=1,
        )


def _import_insightface(path: str):
    folder = Path(path).expanduser().resolve()
    if not (folder / "partial_fc_v2.py").is_file():
        raise SystemExit(
            f"--insightface {path}: no partial_fc_v2.py there; give the folder "
            "recognition/arcface_torch of a copy of deepinsight/insightface"
        )
    sys.path.insert(0, str(folder))
    return (
        importlib.import_module("backbones").get_model,
        importlib.import_module("losses").CombinedMarginLoss,
        importlib.import_module("partial_fc_v2").PartialFC_V2,
    )


@contextlib.contextmanager
def _insightface_precision(amp: torch.dtype | None, device: torch.device, smoke: bool):
    """Redirects InsightFace's ``torch.cuda.amp.autocast(flag)`` to the ``--amp`` dtype; with
    ``smoke``, also keeps its ``.cuda()`` calls on the CPU."""
    saved_autocast, saved_cuda = torch.cuda.amp.autocast, torch.Tensor.cuda

    def autocast(enabled: bool = True, dtype=None, cache_enabled: bool = True):
        return torch.autocast(
            device.type, dtype=amp or torch.float32, enabled=bool(enabled) and amp is not None
        )

    torch.cuda.amp.autocast = autocast
    if smoke:
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.cuda.amp.autocast, torch.Tensor.cuda = saved_autocast, saved_cuda


def insightface_throughput(
    modules,
    backbone: str,
    amp: str,
    batch_size: int,
    classes: int,
    steps: int,
    warmup: int,
    device: torch.device,
    sample_rate: float,
    smoke: bool,
) -> float:
    """Images per second of InsightFace's own training step (train_v2.py's loop body)."""
    get_model, CombinedMarginLoss, PartialFC_V2 = modules
    if backbone not in INSIGHTFACE_NAMES:
        raise SystemExit(f"--setups insightface: no InsightFace name for backbone {backbone!r}")
    dtype = AMP[amp]
    torch.manual_seed(0)
    _init_process_group(device)
    net = get_model(INSIGHTFACE_NAMES[backbone], dropout=0.0, fp16=dtype is not None,
                    num_features=512).to(device).train()  # fmt: skip
    margin = CombinedMarginLoss(64, 1.0, 0.5, 0.0, 0)
    pfc = PartialFC_V2(margin, 512, classes, sample_rate, False).to(device).train()
    opt = torch.optim.SGD(
        params=[{"params": net.parameters()}, {"params": pfc.parameters()}],
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    images = torch.randn(batch_size, 3, 112, 112, device=device)
    labels = torch.randint(0, classes, (batch_size,), device=device)

    def step() -> None:
        loss = pfc(net(images), labels.clone())
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        loss.item()  # train_v2.py logs it every step

    with _insightface_precision(dtype, device, smoke):
        return _timed(step, steps, warmup, batch_size, device)


# ------------------------------------------------------------------------------------ main
def _cases(args) -> list[tuple[str, float | None]]:
    """(setup, sample rate) of each row group."""
    out: list[tuple[str, float | None]] = []
    for setup in args.setups:
        if setup == "plain":
            out.append(("plain", None))
        else:
            out += [(setup, rate) for rate in args.sample_rates]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=["small_cnn", "iresnet18"])
    p.add_argument("--amp", nargs="+", default=["none", "bf16"], choices=list(AMP))
    p.add_argument("--batch-size", type=int, nargs="+", default=[64])
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--classes", type=int, default=1000, help="identities of the ArcFace head")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--setups", nargs="+", default=["plain"], choices=SETUPS)
    p.add_argument(
        "--sample-rates", type=float, nargs="+", default=[1.0], help="for pfc and insightface"
    )
    p.add_argument(
        "--insightface",
        default=None,
        help="folder recognition/arcface_torch of a copy of deepinsight/insightface",
    )
    p.add_argument(
        "--smoke", action="store_true", help="CPU, batch 2, 1 + 1 steps: checks the script"
    )
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if "insightface" in args.setups and not args.insightface:
        raise SystemExit("--setups insightface needs --insightface PATH (its arcface_torch folder)")
    if args.smoke:
        args.device, args.batch_size, args.steps, args.warmup = "cpu", [2], 1, 1
        args.classes = min(args.classes, 50)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks/train_throughput.py --device cuda: CUDA is not available here "
            "(--smoke runs the same code on the CPU)"
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as marginface train does; for both sides
        where = torch.cuda.get_device_name(device)
    else:
        load = os.getloadavg()[0]
        where = f"CPU, {torch.get_num_threads()} threads, load average {load:.1f} at start"
    modules = _import_insightface(args.insightface) if "insightface" in args.setups else None
    print(
        f"training throughput, images/s: {args.image_size}x{args.image_size}, ArcFace "
        f"({args.classes} classes, D 512), SGD; {args.warmup} warm-up + {args.steps} timed "
        f"steps; {where}; torch {torch.__version__}; marginface's loss path: "
        f"{choose_path(device, torch.float32)}"
    )
    header = "| backbone | batch | setup | " + " | ".join(f"{a} img/s" for a in args.amp)
    if len(args.amp) > 1:
        header += " | " + " | ".join(f"{a} / {args.amp[0]}" for a in args.amp[1:])
    if "insightface" in args.setups:
        header += " | " + " | ".join(f"{a} / InsightFace" for a in args.amp)
    print(header + " |")
    print("|" + "---|" * header.count("|"))
    results = []
    for name in args.backbones:
        for batch in args.batch_size:
            rates: dict[tuple[str, float | None], list[float]] = {}
            for setup, rate in _cases(args):
                if setup == "insightface":
                    rates[setup, rate] = [
                        insightface_throughput(modules, name, amp, batch, args.classes,
                                               args.steps, args.warmup, device, rate, args.smoke)
                        for amp in args.amp
                    ]  # fmt: skip
                else:
                    rates[setup, rate] = [
                        throughput(name, amp, batch, args.image_size, args.classes, args.steps,
                                   args.warmup, device, rate)
                        for amp in args.amp
                    ]  # fmt: skip
            for (setup, rate), values in rates.items():
                label = setup if rate is None else f"{setup} {rate:g}"
                row = f"| {name} | {batch} | {label} | " + " | ".join(f"{r:.1f}" for r in values)
                if len(values) > 1:
                    row += " | " + " | ".join(f"{r / values[0]:.2f}x" for r in values[1:])
                peer = rates.get(("insightface", 1.0 if rate is None else rate))
                if "insightface" in args.setups:
                    ratios = [
                        f"{a / b:.2f}x" if peer else "-"
                        for a, b in zip(values, peer or values, strict=True)
                    ]
                    row += " | " + " | ".join(ratios)
                print(row + " |", flush=True)
                per_amp = dict(zip(args.amp, values, strict=True))
                results.append(
                    {"backbone": name, "batch": batch, "setup": setup, "sample_rate": rate,
                     "images_per_s": per_amp}
                )  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        config = {**vars(args), "where": where, "torch": torch.__version__}
        Path(args.json).write_text(json.dumps({"config": config, "rows": results}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
