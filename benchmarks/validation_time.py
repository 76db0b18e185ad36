"""Validation's share of a training epoch: the old fixed ``--max-pairs 3000`` against the
default sized by time (``val_max_pairs`` None: :func:`marginface.training.validation.fit`).

One epoch of ``marginface.training.train`` on synthetic identities at 112 px with a held-out
synthetic set of other identities as ``--pairs`` (the issue's case: ~1,100 training crops,
a few hundred held-out ones), once per setting; the validation is timed around
``Validator.run`` and the training steps from the log. Prints, side by side, the pairs and
images one validation embeds, its seconds, the epoch's training seconds, validation's share
of the epoch, and the measured cost of a validation image over a training image (the
``EMBED_COST`` the rule assumes)::

    python benchmarks/validation_time.py                       # small_cnn, 1,100 + 600 crops
    python benchmarks/validation_time.py --held-out synthetic:40x5,first=100000

Say the machine's load (``uptime``) with any figure: the share is a ratio of two times taken
in the same run, so it moves less with the load than either time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from marginface.training import train
from marginface.training import validation as val


def run(args: argparse.Namespace, max_pairs: int | None) -> dict[str, float]:
    spent: list[float] = []
    inner = val.Validator.run

    def timed(self, backbone):  # the benchmark's own timer around one validation
        t0 = time.perf_counter()
        try:
            return inner(self, backbone)
        finally:
            spent.append(time.perf_counter() - t0)

    val.Validator.run = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = train(dict(
                data=args.data, backbone=args.backbone, head="arcface", image_size=112,
                embedding_size=128, batch_size=args.batch_size, epochs=1, lr=0.05,
                val=[args.held_out], val_max_pairs=max_pairs, progress=False,
                tensorboard=False, device="cpu", summary_images=0, output=str(Path(tmp) / "r"),
            ))  # fmt: skip
            events = [
                json.loads(x) for x in (Path(tmp) / "r" / "log.jsonl").read_text().split("\n") if x
            ]
    finally:
        val.Validator.run = inner
    size = next((e for e in events if e.get("event") == "validation_size"), None)
    steps = [r for r in result.history if r["type"] == "train"]
    train_s = sum(args.batch_size / r["images_per_s"] for r in steps)
    train_images = args.batch_size * len(steps)
    from marginface.data import open_pairs

    pairs = open_pairs(args.held_out, image_size=112, max_pairs=max_pairs or 3000)
    n_pairs = size["pairs"] if size else len(pairs)
    embedded = 2 * n_pairs  # evaluate_pairs here embeds both images of every pair
    return {
        "pairs": n_pairs,
        "images embedded": embedded,
        "distinct images": size["images"] if size else val.distinct_count(pairs.images),
        "validation s": spent[0],
        "epoch training s": train_s,
        "share of epoch": spent[0] / (train_s + spent[0]),
        "cost of a validation image / training image": (spent[0] / embedded)
        / (train_s / train_images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic:50x22")
    parser.add_argument("--held-out", default="synthetic:100x6,first=100000")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = {"--max-pairs 3000 (before)": run(args, 3000), "sized by time (after)": run(args, None)}
    print(
        f"{args.backbone} at 112 px, train {args.data}, held-out {args.held_out}, "
        f"{args.threads} threads, {os.cpu_count()} cores, load average {load:.1f} at start"
    )
    keys = list(next(iter(rows.values())))
    print("| | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys:
        cells = [f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for r in rows.values()]
        print(f"| {k} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
