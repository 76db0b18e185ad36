"""Evaluation at benchmark scale: IJB-C's 1:1 protocol and a 1:N search of a 1M gallery.

IJB-C 1:1 at its real counts: 469,375 image features, 23,124 templates, 15,658,489 template
pairs (19,557 genuine), written as the benchmark's own metadata files and scored by the
project's IJB code (``read_ijb_meta`` -> ``template_features`` -> ``template_pair_scores`` ->
``nearest_far_tar`` and the AUC). The features are random (3,531 subjects, each a random centre
plus noise), made in float64 as ``evaluate_ijb`` embeds them: the images are not needed for the
scoring stage, which is what this measures. 1:N: ``identification_metrics`` with a gallery of
1M embeddings (one per identity) and probes of the first identities.

Each measurement runs in a fresh process that reports its own peak resident memory
(``ru_maxrss``) and the time of each stage, so one stage's memory does not hide another's::

    python benchmarks/ijb_scale.py                      # IJB-C's counts and a 1M gallery
    python benchmarks/ijb_scale.py --scale 0.05         # a twentieth of IJB-C, quick
    python benchmarks/ijb_scale.py --output benchmarks/results/ijb_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IJBC = {"images": 469_375, "templates": 23_124, "pairs": 15_658_489, "genuine": 19_557}
SUBJECTS = 3_531


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def write_protocol(root: Path, scale: float, dim: int, seed: int = 0) -> dict[str, int]:
    """IJB-C's layout at ``scale`` x its counts under ``root`` (meta/*.txt and features.npy)."""
    rng = np.random.default_rng(seed)
    n = int(IJBC["images"] * scale)
    t = int(IJBC["templates"] * scale)
    p = int(IJBC["pairs"] * scale)
    g = int(IJBC["genuine"] * scale)
    subjects = max(2, int(SUBJECTS * scale))
    template_ids = rng.choice(np.arange(1, 10 * t), t, replace=False)
    subject_of = rng.integers(0, subjects, t)
    which = np.concatenate([np.arange(t), rng.integers(0, t, n - t)])
    media = which * 4 + rng.integers(0, 4, n)
    centres = rng.normal(size=(subjects, dim))
    features = centres[subject_of[which]] + 1.5 * rng.normal(size=(n, dim))
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    np.save(root / "features.npy", features)
    names = [f"img/{i}.jpg" for i in range(n)]
    marks = " ".join(["50.0"] * 10)
    faceness = rng.uniform(0.5, 1.0, n)
    with open(meta / "ijbc_name_5pts_score.txt", "w") as f:
        f.writelines(f"{name} {marks} {s:.4f}\n" for name, s in zip(names, faceness, strict=True))
    with open(meta / "ijbc_face_tid_mid.txt", "w") as f:
        f.writelines(
            f"{name} {template_ids[w]} {m}\n"
            for name, w, m in zip(names, which, media, strict=True)
        )
    by_subject: dict[int, np.ndarray] = {}
    order = np.argsort(subject_of, kind="stable")
    cuts = np.flatnonzero(np.diff(subject_of[order])) + 1
    for block in np.split(order, cuts):
        by_subject[int(subject_of[block[0]])] = block
    multi = [b for b in by_subject.values() if len(b) > 1]
    genuine = []
    while len(genuine) < g:
        b = multi[rng.integers(len(multi))]
        a, c = rng.choice(b, 2, replace=False)
        genuine.append((a, c))
    first = rng.integers(0, t, p - g)
    second = rng.integers(0, t, p - g)
    same = subject_of[first] == subject_of[second]
    second[same] = (second[same] + 1) % t  # mostly different subjects; rare leftovers are fine
    pairs = np.concatenate([np.array(genuine), np.stack([first, second], 1)])
    labels = np.concatenate([np.ones(g, np.int64), np.zeros(p - g, np.int64)])
    rows = np.column_stack([template_ids[pairs[:, 0]], template_ids[pairs[:, 1]], labels])
    with open(meta / "ijbc_template_pair_label.txt", "w") as f:
        for start in range(0, len(rows), 1 << 20):
            block = rows[start : start + (1 << 20)]
            f.write("\n".join(" ".join(map(str, r)) for r in block.tolist()) + "\n")
    return {"images": n, "templates": t, "pairs": p, "genuine": g}


def score_ijb(root: Path) -> dict:
    """The scoring stage of ``evaluate_ijb`` on ``root``'s protocol, stage by stage."""
    from sklearn.metrics import roc_auc_score

    from marginface.evaluation.ijb import (
        nearest_far_tar,
        read_ijb_meta,
        template_features,
        template_pair_scores,
    )

    times = {}
    start = time.perf_counter()
    meta = read_ijb_meta(root)
    times["read metadata"] = time.perf_counter() - start
    features = np.load(root / "features.npy")
    start = time.perf_counter()
    feats, ids = template_features(features, meta.templates, meta.medias, meta.faceness)
    times["template features"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = template_pair_scores(feats, ids, meta.pairs)
    times["pair scores"] = time.perf_counter() - start
    start = time.perf_counter()
    labels = meta.labels.astype(bool)
    tar = nearest_far_tar(scores, labels)
    auc = roc_auc_score(labels, scores)
    times["ROC, TAR@FAR, AUC"] = time.perf_counter() - start
    return {
        "pairs": int(len(scores)),
        "templates": int(len(ids)),
        "images": int(len(meta.names)),
        "tar_at_1e-4": tar[1e-4],
        "auc": float(auc),
        "seconds": times,
        "peak_gib": peak_gib(),
    }


def score_identification(gallery: int, probes: int, dim: int, seed: int = 0) -> dict:
    """``identification_metrics`` with ``gallery`` identities of one image each."""
    import torch

    from marginface.evaluation.identification import identification_metrics

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    g = np.empty((gallery, dim), dtype=np.float32)
    for s in range(0, gallery, 1 << 17):  # in blocks: no float64 copy of the whole gallery
        g[s : s + (1 << 17)] = rng.standard_normal((min(1 << 17, gallery - s), dim))
    p = g[:probes] + 0.9 * rng.standard_normal((probes, dim)).astype(np.float32)
    made = time.perf_counter() - start
    start = time.perf_counter()
    metrics = identification_metrics(g, np.arange(gallery), p, np.arange(probes))
    took = time.perf_counter() - start
    return {
        "gallery": gallery,
        "probes": probes,
        "rank1": metrics["rank1"],
        "seconds": {"make embeddings": made, "ranks": took},
        "probes_per_second": probes / took,
        "threads": torch.get_num_threads(),
        "peak_gib": peak_gib(),
    }


def child(argv: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *argv], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of IJB-C's counts")
    parser.add_argument("--dim", type=int, default=512, help="embedding size")
    parser.add_argument("--gallery", type=int, default=1_000_000, help="1:N gallery size")
    parser.add_argument("--probes", type=int, default=1_000, help="1:N probes")
    parser.add_argument("--workdir", help="where the protocol files go (default: a temp dir)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--child", choices=["ijb", "ident"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ijb":
        print(json.dumps(score_ijb(Path(args.root))))
        return
    if args.child == "ident":
        print(json.dumps(score_identification(args.gallery, args.probes, args.dim)))
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        start = time.perf_counter()
        counts = write_protocol(Path(tmp), args.scale, args.dim)
        print(f"protocol {counts} written in {time.perf_counter() - start:.0f} s", flush=True)
        ijb = child(["--child", "ijb", "--root", tmp])
    print(f"IJB-C 1:1 scoring: {ijb['images']:,} images, {ijb['templates']:,} templates, "
          f"{ijb['pairs']:,} pairs: peak {ijb['peak_gib']:.2f} GiB")  # fmt: skip
    for stage, seconds in ijb["seconds"].items():
        print(f"  {stage:<20} {seconds:7.1f} s")
    ident = child(["--child", "ident", "--gallery", str(args.gallery), "--probes",
                   str(args.probes), "--dim", str(args.dim)])  # fmt: skip
    print(f"1:N identification: gallery {ident['gallery']:,}, {ident['probes']:,} probes: "
          f"{ident['seconds']['ranks']:.1f} s ({ident['probes_per_second']:.0f} probes/s, "
          f"{ident['threads']} threads), peak {ident['peak_gib']:.2f} GiB")  # fmt: skip
    result = {
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
        "scale": args.scale,
        "dim": args.dim,
        "ijb": ijb,
        "identification": ident,
    }
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
