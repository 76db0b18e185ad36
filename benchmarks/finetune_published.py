"""Fine-tuning a published (imported) model on new people: does it help, and what does it cost?

Starting from ``--init`` (a model folder, e.g. written by ``marginface import``), each variant runs
``marginface train --init MODEL --data TRAIN`` (the project's command, its defaults unless the
variant says otherwise), and every model, the start included, is measured on:

- the held-out identities (``--test``, an aligned folder of people not in TRAIN): embedded by
  ``marginface embed`` (the model's contract and flip test), all genuine pairs and
  ``--impostors`` impostor pairs
  (:func:`marginface.data.formats.verification.generate_pairs`, seed 0);
  10-fold accuracy and TAR at FAR = 1e-3 and 1e-4, and the difference to the start model with
  the paired bootstrap over held-out identities (:mod:`marginface.evaluation.bootstrap`, 1,000
  replicates, 95% percentile interval: "ahead", "behind" or "within noise");
- optionally LFW (``--lfw pairs.txt::ALIGNED``): ``marginface eval``'s 10-fold accuracy, start
  against fine-tuned (what fine-tuning may cost on the model's old domain).

``--domain grey`` or ``low32`` first turns the train and test crops into a more different domain
(greyscale; or downsampled to 32x32 and back up to the crop size, bilinear), written under
``--work``; LFW stays as it is.

Variants (``--variants``, comma-separated): ``default`` (train's defaults with ``--init``:
imprinted centres, AdamW at 1e-3, the backbone at 0.1 x that), ``sgd`` (SGD at 0.1, the rates
of a run from scratch), ``random`` (random centres), ``full`` (backbone at the head's rate),
``frozen`` (backbone learning rate 0: only the head learns; BatchNorm statistics, where the
backbone has any, follow the new data), ``freeze2`` (the first 2 stages frozen).

    python benchmarks/finetune_published.py --init models/mbf --train celeb/train \\
        --test celeb/test --lfw LFW/pairs.txt::LFW/aligned --epochs 2 --work /tmp/ft

Prints one table; writes ``benchmarks/results/finetune_published.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from marginface.data.formats.verification import generate_pairs
from marginface.evaluation.bootstrap import paired_bootstrap
from marginface.evaluation.metrics import kfold_accuracy, roc, tar_at_far

VARIANTS = {
    "default": [],
    "sgd": ["--optimizer", "sgd", "--lr", "0.1"],
    "random": ["--init-centres", "random"],
    "frozen": ["--backbone-lr", "0"],
    "full": ["--backbone-lr", "1"],
    "freeze2": ["--freeze", "2"],
}
FARS = (1e-3, 1e-4)


def marginface(*argv: str) -> float:
    print("$ marginface " + " ".join(argv), flush=True)
    start = time.time()
    subprocess.run([sys.executable, "-m", "marginface", *argv], check=True)
    return time.time() - start


def to_domain(src: Path, dst: Path, domain: str) -> Path:
    """A copy of the aligned folder ``src`` in ``domain`` (made once)."""
    if domain == "none":
        return src
    done = dst / ".complete"
    if done.exists():
        return dst
    for path in sorted(src.rglob("*.png")):
        image = Image.open(path).convert("RGB")
        if domain == "grey":
            image = image.convert("L").convert("RGB")
        elif domain == "low32":
            size = image.size
            image = image.resize((32, 32), Image.BILINEAR).resize(size, Image.BILINEAR)
        else:
            raise SystemExit(f"unknown domain {domain!r}")
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out)
    done.write_text("")
    return dst


def held_out_scores(model: str, test: Path, work: Path, impostors: int):
    """Cosine scores, same flags and identity groups of the held-out pairs."""
    out = work / "embed.npz"
    if not out.exists():  # measured before (a rerun of the benchmark)
        marginface("embed", str(test), "--checkpoint", model, "--output", str(out), "--quiet")
    data = np.load(out)
    names = [str(n) for n in data["names"]]
    emb = data["embeddings"].astype(np.float64)
    identities = [Path(n).parent.name for n in names]
    _, labels = np.unique(identities, return_inverse=True)
    pairs, issame = generate_pairs(labels, max_pairs=10**9, impostors=impostors)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(axis=1)
    return scores, issame, labels[pairs[:, 0]]


def lfw_accuracy(model: str, lfw: str, work: Path) -> float:
    out = work / "lfw_eval"
    if not (out / "metrics.json").exists():
        marginface("eval", "--checkpoint", model, "--pairs", lfw, "--output", str(out), "--quiet")
    metrics = json.loads((out / "metrics.json").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "accuracy" in node and isinstance(node["accuracy"], float):
                found.append(node["accuracy"])
            for v in node.values():
                walk(v)

    walk(metrics)
    if not found:
        raise SystemExit(f"{out}/metrics.json: no accuracy in it")
    return found[0]


def measure(model: str, args, work: Path, test: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    scores, issame, groups = held_out_scores(model, test, work, args.impostors)
    acc, std, _, _ = kfold_accuracy(scores, issame)
    fpr, tpr, _ = roc(scores, issame)
    tars = tar_at_far(fpr, tpr, int((~issame).sum()), FARS)
    entry = {
        "accuracy": acc,
        "accuracy_std": std,
        "genuine": int(issame.sum()),
        "impostors": int((~issame).sum()),
        **{f"tar@{f:.0e}": tars.get(f, float("nan")) for f in FARS},
        "_scores": scores,
        "_issame": issame,
        "_groups": groups,
    }
    if args.lfw:
        entry["lfw_accuracy"] = lfw_accuracy(model, args.lfw, work)
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="the start model folder (imported)")
    p.add_argument("--train", required=True, type=Path, help="aligned training folder")
    p.add_argument("--test", required=True, type=Path, help="aligned held-out folder")
    p.add_argument("--lfw", help="pairs.txt::ALIGNED_LFW (optional)")
    p.add_argument("--domain", default="none", choices=["none", "grey", "low32"])
    p.add_argument("--variants", default="default,sgd,random,full,freeze2")
    p.add_argument("--epochs", type=int, default=None, help="train --epochs (default: train's)")
    p.add_argument("--impostors", type=int, default=100_000)
    p.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--extra", default="", help="more train flags for every variant")
    p.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/finetune_published.json")
    )
    args = p.parse_args()
    work = args.work / args.domain
    train = to_domain(args.train, work / "train", args.domain)
    test = to_domain(args.test, work / "test", args.domain)
    rows = {"start": measure(args.init, args, work / "start", test)}
    seconds = {}
    for name in args.variants.split(","):
        run = work / f"run_{name}"
        argv = ["train", "--init", args.init, "--data", str(train), "--output", str(run)]
        argv += ["--quiet", "--no-tensorboard", *VARIANTS[name], *args.extra.split()]
        if args.epochs:
            argv += ["--epochs", str(args.epochs)]
        if not (run / "model.json").exists():
            seconds[name] = marginface(*argv)
        rows[name] = measure(str(run), args, work / f"eval_{name}", test)
    start = rows["start"]
    intervals = {}
    for name, r in rows.items():
        if name == "start":
            continue
        intervals[name] = paired_bootstrap(
            r["_scores"], start["_scores"], start["_issame"], start["_groups"], list(FARS),
            replicates=args.replicates,
        )  # fmt: skip
    print()
    print(f"domain {args.domain}; held-out: {start['genuine']} genuine, {start['impostors']} "
          "impostor pairs")  # fmt: skip
    head = "| model | 10-fold accuracy | TAR@FAR=1e-3 | TAR@FAR=1e-4 |"
    head += " LFW |" if args.lfw else ""
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name, r in rows.items():
        cells = [f"{100 * r['accuracy']:.2f}%", f"{r['tar@1e-03']:.3f}", f"{r['tar@1e-04']:.3f}"]
        if name in intervals:
            for k, f in enumerate(FARS):
                i = intervals[name][f]
                cells[k + 1] += (
                    f" ({i['difference']:+.3f} [{i['ci_low']:+.3f}, {i['ci_high']:+.3f}])"
                )
        if args.lfw:
            cells.append(f"{100 * r['lfw_accuracy']:.2f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")
    results = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "train_seconds": seconds,
        "rows": {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in rows.items()},
        "intervals_vs_start": {
            n: {f"{f:.0e}": v for f, v in per.items()} for n, per in intervals.items()
        },
    }
    out = args.output
    if out.exists():
        merged = json.loads(out.read_text())
        merged[args.domain] = results
    else:
        merged = {args.domain: results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
