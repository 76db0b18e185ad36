"""Does ``marginface train``'s default head converge and beat softmax at every number of classes?

For each training set (synthetic identities at several counts, and optionally a folder of real
aligned faces), trains the default head (``TrainConfig().head`` with its defaults: s = auto) and
plain softmax with the training defaults (SGD lr 0.1, batch 128, poly decay, 20 epochs) except the
backbone and image size given here, then verifies identities never seen in training (all genuine
pairs up to ``--max-pairs`` and as many impostor pairs, flip test) and compares the two heads with
a paired bootstrap over the held-out identities (:mod:`marginface.evaluation.bootstrap`).
Optional extra runs (``--extra``) add other settings of the default head, e.g. the papers' s=64.

    python benchmarks/scale_defaults.py --identities 100 1000          # synthetic only
    python benchmarks/scale_defaults.py --identities --real-train ALIGNED/train \\
        --real-test ALIGNED/test --image-size 64                        # real photos only

Prints one table (final loss, share of training images nearer their own centre, held-out
accuracy, AUC, TAR@FAR=1e-3 and 1e-4) and the intervals of default - softmax; writes
``benchmarks/results/scale_defaults.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginface.data.formats.verification import generate_pairs
from marginface.data.transforms import TRAINING_TRANSFORMS
from marginface.demo.cache import render_dataset
from marginface.demo.parallel import run_jobs
from marginface.demo.progress import DemoProgress
from marginface.evaluation import EmbedOptions, embed_dataset, verification_metrics
from marginface.evaluation.bootstrap import paired_bootstrap
from marginface.training import TrainConfig, train

FARS = (1e-3, 1e-4)


def held_out_scores(backbone, test_set, pairs: np.ndarray) -> np.ndarray:
    """Cosine scores of the held-out pairs (flip-test embeddings, each image embedded once)."""
    emb = embed_dataset(backbone, test_set, EmbedOptions(batch_size=256, progress=False))
    emb = emb.astype(np.float64)
    return np.sum(emb[pairs[:, 0]] * emb[pairs[:, 1]], axis=1)


def run_one(context: tuple, job: tuple, progress) -> dict[str, Any]:
    """Train one head with the training defaults; held-out scores and the run's summary (a
    job of :func:`marginface.demo.parallel.run_jobs`)."""
    train_set, test_set, pairs, args, work = context
    name, head, head_kwargs, seed = job
    out = work / f"{name}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(
        data=train_set.spec,
        head=head,
        head_kwargs=head_kwargs,
        backbone=args.backbone,
        image_size=args.image_size,
        seed=seed,
        output=str(out),
        progress=False,
        tensorboard=False,
        log_every=50,
        device="cpu",
        **({"epochs": args.epochs} if args.epochs else {}),
    )
    t0 = time.perf_counter()
    steps = (len(train_set) // config.batch_size) * config.epochs
    progress.start_run(f"{name} seed {seed}", steps, config.batch_size)
    try:
        result = train(
            config, dataset=train_set.with_transforms(TRAINING_TRANSFORMS), on_step=progress.step
        )
    finally:
        progress.end_run()
    seconds = time.perf_counter() - t0
    losses = [r["loss"] for r in result.history]
    return {
        "name": name,
        "seed": seed,
        "head": head,
        "head_kwargs": dict(result.head.hparams()),
        "steps": result.steps,
        "first_loss": losses[0],
        "last_loss": float(np.mean(losses[-10:])),
        "nearer_own_share": result.summary["nearer_own_share"],
        "warnings": result.warnings,
        "train_s": seconds,
        "scores": held_out_scores(result.backbone, test_set, pairs),
    }


def compare(dataset: str, runs: list[dict], issame: np.ndarray, groups: np.ndarray, reps: int):
    """Per run: held-out metrics; per non-softmax setting: paired bootstrap against softmax,
    scores averaged over seeds (one model per seed, the same pairs)."""
    rows = []
    for r in runs:
        m = verification_metrics(r["scores"], issame)
        rows.append(
            {
                "dataset": dataset,
                **{k: v for k, v in r.items() if k != "scores"},
                "accuracy": m["accuracy"],
                "auc": m["auc"],
                **{f"tar@{far:.0e}": m["tar_at_far"].get(far) for far in FARS},
            }
        )
    names = sorted({r["name"] for r in runs})
    mean = {n: np.mean([r["scores"] for r in runs if r["name"] == n], axis=0) for n in names}
    intervals = {}
    for n in names:
        if n == "softmax":
            continue
        intervals[n] = {
            f"tar@{far:.0e}": paired_bootstrap(
                mean[n], mean["softmax"], issame, groups, far, replicates=reps
            )
            for far in FARS
            if far * int((~issame).sum()) >= 1  # resolvable by the impostor pairs
        }
    return rows, intervals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--identities", type=int, nargs="*", default=[100, 1000])
    p.add_argument("--images", type=int, default=20, help="images per synthetic identity")
    p.add_argument("--test", default="synthetic:300x10,first=1000000", help="held-out spec")
    p.add_argument("--real-train", help="folder of aligned faces (identity folders) to train")
    p.add_argument("--real-test", help="folder of aligned faces of other people, held out")
    p.add_argument("--backbone", default="small_cnn")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, help="override the training default (20)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--max-pairs", type=int, default=12000, help="genuine pairs (and impostors)")
    p.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--extra", default="{}", help="JSON {name: head_kwargs} of the default head")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--output", default="benchmarks/results/scale_defaults.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    default_head = TrainConfig().head
    settings = [("default", default_head, {}), ("softmax", "softmax", {})]
    settings += [(n, default_head, kw) for n, kw in json.loads(args.extra).items()]
    sets = [(f"synthetic {c}x{args.images}", f"synthetic:{c}x{args.images}", args.test)
            for c in args.identities]  # fmt: skip
    if args.real_train:
        sets.append((f"real {Path(args.real_train).name}", args.real_train, args.real_test))
    results: dict[str, Any] = {"settings": vars(args), "default_head": default_head, "sets": []}
    work = Path(tempfile.mkdtemp(prefix="scale_defaults-"))
    try:
        for label, spec, test_spec in sets:
            train_set = render_dataset(spec, args.image_size)
            test_set = render_dataset(test_spec, args.image_size)
            pairs, issame = generate_pairs(test_set.labels, max_pairs=args.max_pairs)
            groups = test_set.labels[pairs[:, 0]]
            held = f"{test_set.num_classes} identities, {len(issame)} pairs"
            print(f"{label}: {train_set.num_classes} classes, {len(train_set)} images; "
                  f"held out {held}", flush=True)  # fmt: skip
            jobs = [(n, h, kw, seed) for seed in range(args.seeds) for n, h, kw in settings]
            epochs = args.epochs or TrainConfig().epochs
            batch = TrainConfig().batch_size
            total = len(jobs) * (len(train_set) // batch) * epochs * batch
            progress = DemoProgress(total)
            context = (train_set, test_set, pairs, args, work)
            runs = run_jobs(run_one, context, jobs, args.workers, progress, args.threads)
            for r in runs:
                print(f"  {r['name']} seed {r['seed']}: loss {r['first_loss']:.2f} -> "
                      f"{r['last_loss']:.2f}, nearer own {r['nearer_own_share']:.1%}, "
                      f"{r['train_s']:.0f} s", flush=True)  # fmt: skip
            rows, intervals = compare(label, runs, issame, groups, args.replicates)
            results["sets"].append({"dataset": label, "runs": rows, "vs_softmax": intervals})
            _print_table(label, rows, intervals)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {args.output}")


def _print_table(label: str, rows: list[dict], intervals: dict) -> None:
    print(f"\n{label}")
    print("| run | s | last loss | nearer own | accuracy | AUC | TAR@1e-3 | TAR@1e-4 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["head_kwargs"].get("s", "-")
        s = f"{s:.1f}" if isinstance(s, float) else s
        t3, t4 = (("-" if t is None else f"{t:.4f}") for t in (r["tar@1e-03"], r["tar@1e-04"]))
        print(f"| {r['name']} seed {r['seed']} | {s} | {r['last_loss']:.2f} | "
              f"{r['nearer_own_share']:.1%} | {r['accuracy']:.4f} | {r['auc']:.4f} | "
              f"{t3} | {t4} |")  # fmt: skip
    for name, by_far in intervals.items():
        for far, b in by_far.items():
            print(f"{name} - softmax, {far}: {b['difference']:+.4f} "
                  f"[{b['ci_low']:+.4f}, {b['ci_high']:+.4f}] {b['verdict']}")  # fmt: skip
    print(flush=True)


if __name__ == "__main__":
    main()
