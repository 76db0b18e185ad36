"""A published face model on LFW through marginface's own commands, detector by detector.

For each detector (``mtcnn``, the built-in one, and SCRFD ``.onnx`` files), the photos of the
official 6,000 pairs are detected and aligned by ``marginface align --detect [--detector FILE]
--select central`` (LFW photos are centred on their subject); a photo where no face is found is
replaced by the whole photo resized to the crop size (what ``marginface eval --detect`` does), so
every pair gets a score. Then the model verifies the pairs:

- ``--checkpoint DIR`` (a marginface model folder, e.g. made by ``marginface import``):
  ``marginface eval --checkpoint DIR --pairs pairs.txt::ALIGNED`` (the model's own input
  contract and flip test);
- ``--onnx FILE`` with ``--mean/--std/--bgr``: onnxruntime on the crops, flip test (the sum of the
  embeddings of the crop and its mirror), the input contract given here.

Printed per detector: photos without a face, LFW 10-fold accuracy (mean +- std over the folds,
:func:`marginface.evaluation.metrics.kfold_accuracy`), and the accuracy at the one threshold
that is best on all 6,000 pairs (what some authors report instead of 10-fold), next to the
authors' figure (``--authors``). With ``--checkpoint`` and ``--onnx`` both, import parity: the
max abs difference of L2-normalised embeddings, ONNX (onnxruntime) against the imported module
(``marginface embed``), on ``--parity`` crops.

Also the landmark gap between two detectors: for photos both aligned, the distance between
their landmarks, per point, in inter-ocular distances (IOD) of the first detector, and the mean
signed offset (a systematic shift is a convention or a training-set difference, not noise).

    python benchmarks/published_lfw.py --lfw LFW/lfw --pairs LFW/pairs.txt \\
        --onnx MODEL.onnx --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375 \\
        --detector mtcnn --detector det_500m.onnx --work /tmp/lfw_work --authors 99.48

Research data and weights stay outside the repository (paths given here; nothing downloaded).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from marginface.evaluation.metrics import accuracy_at, best_threshold, kfold_accuracy

LANDMARKS = ("left eye", "right eye", "nose", "left mouth", "right mouth")


def pair_names(pairs: Path) -> tuple[list[str], np.ndarray]:
    """The 2N image stems ``name/name_%04d`` of an LFW pairs.txt and the N same-person flags."""
    names, same = [], []
    for number, line in enumerate(pairs.read_text().splitlines(), start=1):
        f = line.split()
        if not f or (number == 1 and len(f) <= 2):
            continue
        a, b = ((f[0], f[1]), (f[0], f[2])) if len(f) == 3 else ((f[0], f[1]), (f[2], f[3]))
        names += [f"{n}/{n}_{int(i):04d}" for n, i in (a, b)]
        same.append(len(f) == 3)
    return names, np.asarray(same, dtype=bool)


def link_photos(lfw: Path, names: list[str], folder: Path) -> None:
    """Hard links (copies across devices) of the pair photos under ``folder``."""
    for stem in sorted(set(names)):
        src, dst = lfw / f"{stem}.jpg", folder / f"{stem}.jpg"
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            dst.write_bytes(src.read_bytes())


def marginface(*argv: str) -> None:
    command = [sys.executable, "-m", "marginface", *argv]
    print("$ marginface " + " ".join(argv), flush=True)
    subprocess.run(command, check=True)


def align(photos: Path, out: Path, detector: str, workers: int, size: int) -> dict:
    """``marginface align --detect`` (resumable), then whole-photo stand-ins for misses."""
    argv = ["align", "--detect", str(photos), "--output", str(out), "--select", "central"]
    argv += ["--workers", str(workers), "--image-size", str(size), "--quiet"]
    if detector != "mtcnn":
        argv += ["--detector", detector]
    start = time.time()
    marginface(*argv)
    seconds = time.time() - start
    rows = list(csv.DictReader(open(out / "detections.csv", newline="")))
    missed = [r["path"] for r in rows if r["status"] != "ok"]
    for path in missed:
        stand_in = (out / path).with_suffix(".png")
        if not stand_in.exists():
            photo = Image.open(photos / path).convert("RGB")
            photo.resize((size, size), Image.BILINEAR).save(stand_in)
    return {"photos": len(rows), "no_face": missed, "align_seconds": round(seconds, 1)}


def landmarks_of(csv_path: Path) -> dict[str, np.ndarray]:
    out = {}
    for r in csv.DictReader(open(csv_path, newline="")):
        if r["status"] == "ok":
            out[r["path"]] = np.array(
                [[float(r[f"lx{k}"]), float(r[f"ly{k}"])] for k in range(1, 6)]
            )
    return out


def landmark_gap(a_csv: Path, b_csv: Path) -> dict:
    a, b = landmarks_of(a_csv), landmarks_of(b_csv)
    common = sorted(set(a) & set(b))
    pa, pb = np.stack([a[k] for k in common]), np.stack([b[k] for k in common])
    iod = np.linalg.norm(pa[:, 1] - pa[:, 0], axis=1)[:, None]
    dist = np.linalg.norm(pb - pa, axis=2) / iod  # (N, 5)
    shift = ((pb - pa) / iod[:, :, None]).mean(axis=0)  # (5, 2)
    return {
        "photos": len(common),
        "median_iod_px": float(np.median(iod)),
        "mean_distance_iod": {n: float(dist[:, k].mean()) for k, n in enumerate(LANDMARKS)},
        "median_distance_iod": float(np.median(dist.mean(axis=1))),
        "share_over_0.1_iod": float((dist.mean(axis=1) > 0.1).mean()),
        "mean_offset_iod_xy": {n: shift[k].round(4).tolist() for k, n in enumerate(LANDMARKS)},
    }


def onnx_embeddings(
    model: Path, folder: Path, stems: list[str], mean, std, bgr: bool, flip: bool = True
) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    out = {}
    for start in range(0, len(stems), 64):
        chunk = stems[start : start + 64]
        x = np.stack([np.asarray(Image.open(folder / f"{s}.png").convert("RGB")) for s in chunk])
        x = x.astype(np.float32)[..., ::-1] if bgr else x.astype(np.float32)
        x = np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2))
        e = session.run(None, {name: x})[0]
        if flip:
            e = e + session.run(None, {name: np.ascontiguousarray(x[..., ::-1])})[0]
        out.update(zip(chunk, e, strict=True))
    return out


def verify_scores(emb: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    a = np.stack([emb[n] for n in names[0::2]])
    b = np.stack([emb[n] for n in names[1::2]])
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def accuracies(scores: np.ndarray, same: np.ndarray) -> dict:
    mean, std, folds, _ = kfold_accuracy(scores, same)
    threshold, _ = best_threshold(scores, same)
    return {
        "kfold_accuracy": mean,
        "kfold_std": std,
        "one_threshold_accuracy": accuracy_at(scores, same, threshold),
    }


def eval_checkpoint(checkpoint: str, pairs: Path, aligned: Path, out: Path) -> dict:
    marginface(
        "eval", "--checkpoint", checkpoint, "--pairs", f"{pairs}::{aligned}",
        "--output", str(out), "--quiet",
    )  # fmt: skip
    report = json.loads((out / "metrics.json").read_text())
    metrics = next(iter(report.values()))  # one pair set: named after the aligned folder
    return {"kfold_accuracy": metrics["accuracy"], "kfold_std": metrics["accuracy_std"]}


def parity(checkpoint: str, onnx: Path, folder: Path, stems: list[str], work: Path, contract):
    """Max abs difference of L2-normalised embeddings (no flip): onnxruntime on the crops,
    preprocessed by ``contract``, against ``marginface embed`` of the same crop files."""
    crops = work / "parity_crops"
    for s in stems:
        dst = crops / f"{s}.png"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes((folder / f"{s}.png").read_bytes())
    out = work / "parity_embed.npz"
    marginface(
        "embed", str(crops), "--checkpoint", checkpoint, "--output", str(out), "--no-flip",
        "--quiet",
    )  # fmt: skip
    data = np.load(out)
    names = [str(n)[: -len(".png")] for n in data["names"]]
    ours = dict(zip(names, data["embeddings"], strict=True))
    theirs = onnx_embeddings(onnx, folder, stems, *contract, flip=False)
    a = np.stack([ours[s] for s in stems]).astype(np.float64)
    b = np.stack([theirs[s] for s in stems]).astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.abs(a - b).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", required=True, type=Path, help="LFW photo folder (name/name_0001.jpg)")
    p.add_argument("--pairs", required=True, type=Path, help="the official pairs.txt")
    p.add_argument("--onnx", type=Path, help="the published ONNX model")
    p.add_argument("--checkpoint", help="the imported marginface model folder")
    p.add_argument("--mean", default="127.5,127.5,127.5", help="--onnx: per-channel mean")
    p.add_argument("--std", default="128,128,128", help="--onnx: per-channel std")
    p.add_argument("--bgr", action="store_true", help="--onnx: the model takes BGR")
    p.add_argument("--detector", action="append", help="mtcnn or an SCRFD .onnx (repeatable)")
    p.add_argument("--work", required=True, type=Path, help="folder for photos and crops")
    p.add_argument("--workers", type=int, default=1, help="align --workers")
    p.add_argument("--authors", type=float, help="the accuracy the model's authors publish (%%)")
    p.add_argument("--parity", type=int, default=200, help="crops for the parity check")
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/published_lfw.json"))
    args = p.parse_args()
    if not (args.onnx or args.checkpoint):
        p.error("give --onnx or --checkpoint (or both)")
    detectors = args.detector or ["mtcnn"]
    names, same = pair_names(args.pairs)
    photos = args.work / "photos"
    link_photos(args.lfw, names, photos)
    contract = (
        [float(v) for v in args.mean.split(",")],
        [float(v) for v in args.std.split(",")],
        args.bgr,
    )
    results: dict = {
        "pairs": len(same),
        "photos": len(set(names)),
        "authors": args.authors,
        "onnx": str(args.onnx) if args.onnx else None,
        "checkpoint": args.checkpoint,
        "onnx_contract": {"mean": contract[0], "std": contract[1], "bgr": contract[2]},
        "detectors": {},
    }
    aligned_dirs = {}
    for det in detectors:
        label = "mtcnn" if det == "mtcnn" else Path(det).stem
        aligned = args.work / f"aligned_{label}"
        aligned_dirs[label] = aligned
        entry = align(photos, aligned, det, args.workers, 112)
        entry["no_face_count"] = len(entry.pop("no_face"))
        if args.onnx:
            emb = onnx_embeddings(args.onnx, aligned, sorted(set(names)), *contract)
            entry["onnx"] = accuracies(verify_scores(emb, names), same)
        if args.checkpoint:
            report = eval_checkpoint(
                args.checkpoint, args.pairs, aligned, args.work / f"eval_{label}"
            )
            entry["checkpoint"] = report
        results["detectors"][label] = entry
    labels = list(aligned_dirs)
    if len(labels) >= 2:
        a, b = labels[0], labels[1]
        results["landmark_gap"] = {
            "from": a,
            "to": b,
            **landmark_gap(aligned_dirs[a] / "detections.csv", aligned_dirs[b] / "detections.csv"),
        }
    if args.onnx and args.checkpoint:
        stems = sorted(set(names))[: args.parity]
        results["parity_max_abs"] = parity(
            args.checkpoint, args.onnx, aligned_dirs[labels[0]], stems, args.work, contract
        )
    print()
    print(f"LFW, {len(same)} official pairs, {len(set(names))} photos; authors: {args.authors}%")
    print("| detector | no face | model | 10-fold accuracy | one threshold on all pairs | gap |")
    print("|---|---|---|---|---|---|")
    for label, e in results["detectors"].items():
        for kind in ("onnx", "checkpoint"):
            m = e.get(kind)
            if m is None:
                continue
            gap = f"{100 * m['kfold_accuracy'] - args.authors:+.2f}" if args.authors else "-"
            one = m.get("one_threshold_accuracy")
            print(
                f"| {label} | {e['no_face_count']} | {kind} | {100 * m['kfold_accuracy']:.2f} +- "
                f"{100 * m['kfold_std']:.2f}% | "
                + (f"{100 * one:.2f}%" if one is not None else "-")
                + f" | {gap} |"
            )
    if "landmark_gap" in results:
        g = results["landmark_gap"]
        print(f"landmarks {g['from']} -> {g['to']} on {g['photos']} photos (in IODs): " + ", ".join(
            f"{n} {v:.3f}" for n, v in g["mean_distance_iod"].items()
        ))  # fmt: skip
    if "parity_max_abs" in results:
        print(f"import parity: max abs difference {results['parity_max_abs']:.2e}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
