"""Which ``--backbone-lr`` should ``marginface train --init`` use by default?

Trains a start model on one set of synthetic identities (the training defaults, small_cnn),
then fine-tunes it with ``--init`` (imprinted centres, the fine-tuning schedule) on other
identities from a harder "domain" (``difficulty`` above the start model's), once per backbone
learning-rate factor and seed, and verifies identities of that domain never seen by either run
(all genuine pairs up to ``--max-pairs``, ``--impostors`` impostor pairs, flip test). Each
setting is compared with the start model before fine-tuning and with factor 1 (the backbone at
the head's rate) by a paired bootstrap over the held-out identities, scores of several seeds
averaged (:mod:`marginface.evaluation.bootstrap`). ``--extra`` adds runs at the default factor
with random centres and with frozen stages.

    python benchmarks/finetune_backbone_lr.py --factors 1 0.3 0.1 0.03 0 --seeds 3

Prints one table and the intervals; writes ``benchmarks/results/finetune_backbone_lr.json``.
"""

from __future__ import annotations

import argparse
import json
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
from marginface.evaluation import EmbedOptions, embed_dataset, verification_metrics
from marginface.evaluation.bootstrap import paired_bootstrap
from marginface.training import TrainConfig, train
from marginface.training.config import FINETUNE_BACKBONE_LR

FAR = 1e-3


def scores_of(backbone, test_set, pairs: np.ndarray) -> np.ndarray:
    """Cosine scores of the held-out pairs (flip-test embeddings)."""
    emb = embed_dataset(backbone, test_set, EmbedOptions(batch_size=256, progress=False))
    emb = emb.astype(np.float64)
    return np.sum(emb[pairs[:, 0]] * emb[pairs[:, 1]], axis=1)


def pretrain(args, work: Path) -> Path:
    data = render_dataset(args.pretrain, args.image_size)
    out = work / "start"
    t0 = time.perf_counter()
    result = train(
        TrainConfig(
            data=args.pretrain,
            backbone="small_cnn",
            image_size=args.image_size,
            embedding_size=args.embedding_size,
            epochs=args.pretrain_epochs,
            output=str(out),
            progress=False,
            tensorboard=False,
            log_every=50,
            device="cpu",
            summary_images=0,
        ),
        dataset=data.with_transforms(TRAINING_TRANSFORMS),
    )
    print(
        f"start model: {args.pretrain}, {result.steps} steps, loss "
        f"{result.history[0]['loss']:.2f} -> {result.history[-1]['loss']:.2f}, "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return out


def finetune(args, start: Path, train_set, work: Path, name: str, seed: int, **keys) -> Any:
    out = work / f"{name}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = train(
        TrainConfig(
            data=args.target,
            init=str(start),
            seed=seed,
            output=str(out),
            progress=False,
            tensorboard=False,
            log_every=50,
            device="cpu",
            summary_images=0,
            **{"optimizer": args.optimizer, **keys},
        ),
        dataset=train_set.with_transforms(TRAINING_TRANSFORMS),
    )
    losses = [r["loss"] for r in result.history]
    print(
        f"  {name} seed {seed}: {result.steps} steps, loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return result.backbone


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain", default="synthetic:200x20")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--target", default="synthetic:100x10,first=500000,difficulty=1.5")
    p.add_argument("--test", default="synthetic:100x10,first=2000000,difficulty=1.5")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--factors", type=float, nargs="+", default=[1, 0.3, 0.1, 0.03, 0])
    p.add_argument(
        "--optimizer",
        default="sgd",
        choices=["sgd", "adamw"],
        help="of the fine-tuning runs, at its default rate (the table in docs/training.md: sgd)",
    )
    p.add_argument("--extra", action="store_true", help="also random centres, freeze 2")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-pairs", type=int, default=4500)
    p.add_argument("--impostors", type=int, default=45000)
    p.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default="benchmarks/results/finetune_backbone_lr.json")
    p.add_argument("--scores", help="also save every run's pair scores here (.npz)")
    p.add_argument("--from-scores", help="only tabulate the scores saved by --scores")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.from_scores:
        saved = np.load(args.from_scores)
        issame, groups = saved["issame"], saved["groups"]
        scores = {k[len("run:") :]: saved[k] for k in saved.files if k.startswith("run:")}
    else:
        scores, issame, groups = measure(args)
    rows = table(scores, issame, groups, args)
    results = {
        "settings": vars(args),
        "default_backbone_lr": FINETUNE_BACKBONE_LR,
        "rows": rows,
    }
    if not args.from_scores:  # (the measurement itself took about 25 minutes on 2 shared cores)
        results["minutes"] = (time.perf_counter() - t0) / 60
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {args.output}")


def measure(args) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Train the start model and every fine-tuning run: (scores per setting (S, N), issame,
    groups)."""
    work = Path(tempfile.mkdtemp(prefix="finetune_lr-"))
    try:
        start = pretrain(args, work)
        train_set = render_dataset(args.target, args.image_size)
        test_set = render_dataset(args.test, args.image_size)
        pairs, issame = generate_pairs(
            test_set.labels, max_pairs=args.max_pairs, impostors=args.impostors
        )
        groups = test_set.labels[pairs[:, 0]]
        print(
            f"fine-tune on {args.target} ({len(train_set)} images); held out {args.test}: "
            f"{int(issame.sum())} genuine, {int((~issame).sum())} impostor pairs",
            flush=True,
        )
        from marginface.backbones.checkpoint import load_model

        scores: dict[str, np.ndarray] = {}
        before = scores_of(load_model(start)[0], test_set, pairs)
        scores["before fine-tuning"] = np.stack([before] * args.seeds)
        settings = [(f"backbone-lr {f:g}", {"backbone_lr": f}) for f in args.factors]
        if args.extra:
            settings += [
                ("random centres", {"init_centres": "random"}),
                ("freeze 2", {"freeze": 2}),
            ]
        for name, keys in settings:
            runs = [
                scores_of(finetune(args, start, train_set, work, name, s, **keys), test_set, pairs)
                for s in range(args.seeds)
            ]
            scores[name] = np.stack(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.scores:
        runs = {f"run:{k}": v for k, v in scores.items()}
        np.savez_compressed(args.scores, issame=issame, groups=groups, **runs)
    return scores, issame, groups


def auc_bootstrap(
    a: np.ndarray, b: np.ndarray, issame: np.ndarray, groups: np.ndarray, replicates: int
) -> dict[str, float]:
    """AUC of A minus B (scores (S, N): the mean of the S seeds' AUCs), with the percentile
    95% interval of the paired bootstrap over identities (each pair counted as often as its
    identity was drawn), as :func:`marginface.evaluation.bootstrap.paired_bootstrap` does for
    TAR. Per score vector, ``wins[k, l]`` counts the (genuine pair of identity k, impostor pair
    of identity l) that the genuine one outscores; a replicate drawing identity k c_k times
    then has AUC ``c wins c / ((c . genuine) (c . impostors))``."""
    ids, inverse = np.unique(groups, return_inverse=True)
    k = len(ids)
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(d, minlength=k) for d in rng.integers(0, k, (replicates, k))])
    counts = np.vstack([np.ones(k), counts]).astype(np.float64)  # the data itself first
    genuine = np.bincount(inverse[issame], minlength=k).astype(np.float64)
    impostors = np.bincount(inverse[~issame], minlength=k).astype(np.float64)

    def auc(scores: np.ndarray) -> np.ndarray:  # (R + 1,)
        s_gen, g_gen = scores[issame], inverse[issame]
        wins = np.zeros((k, k))
        for other in range(k):
            below = np.sort(scores[~issame & (inverse == other)])
            beaten = np.searchsorted(below, s_gen, side="left").astype(np.float64)
            wins[:, other] = np.bincount(g_gen, weights=beaten, minlength=k)
        num = np.einsum("rk,kl,rl->r", counts, wins, counts)
        return num / ((counts @ genuine) * (counts @ impostors))

    diff = np.mean([auc(x) for x in a], axis=0) - np.mean([auc(x) for x in b], axis=0)
    low, high = np.percentile(diff[1:], [2.5, 97.5])
    return {"difference": float(diff[0]), "ci_low": float(low), "ci_high": float(high)}


def table(scores: dict[str, np.ndarray], issame, groups, args) -> list[dict]:
    """Per setting: mean (and range) over seeds of AUC and TAR@FAR; paired bootstrap
    intervals (over identities) of both against the start model, against backbone-lr 1 and
    against the default (backbone-lr FINETUNE_BACKBONE_LR, imprinted centres)."""
    default = f"backbone-lr {FINETUNE_BACKBONE_LR:g}"
    others = {"before": "before fine-tuning", "lr1": "backbone-lr 1", "default": default}
    rows = []
    head = " | ".join(f"vs {o}: TAR, AUC" for o in others.values())
    print(f"\n| run | AUC | TAR@FAR={FAR:g} | {head} |")
    print("|---|---|---|" + "---|" * len(others))
    for name, runs in scores.items():
        metrics = [verification_metrics(s, issame) for s in runs]
        auc = [m["auc"] for m in metrics]
        tar = [m["tar_at_far"].get(FAR, float("nan")) for m in metrics]
        row: dict[str, Any] = {"run": name, "auc": auc, f"tar@{FAR:g}": tar}
        cells = []
        for label, other in others.items():
            if other == name or other not in scores:
                cells.append("-")
                continue
            b = paired_bootstrap(
                runs, scores[other], issame, groups, FAR, replicates=args.replicates
            )
            c = auc_bootstrap(runs, scores[other], issame, groups, args.replicates)
            row[f"vs_{label}"] = {"tar": b, "auc": c}
            cells.append(
                f"{b['difference']:+.3f} [{b['ci_low']:+.3f}, {b['ci_high']:+.3f}], "
                f"{c['difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
            )
        rows.append(row)

        def span(v: list[float]) -> str:
            return f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})"

        print(f"| {name} | {span(auc)} | {span(tar)} | {' | '.join(cells)} |")
    return rows


if __name__ == "__main__":
    main()
