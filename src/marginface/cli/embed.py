"""``marginface embed``: embeddings of a folder of images (or a dataset) into an .npz."""

from __future__ import annotations

import argparse

from marginface.cli._errors import print_warning
from marginface.cli._use import add_detector_arguments, add_model_arguments, add_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="embed a folder of images (recursively) or a dataset into FILE.npz",
        description=(
            "Writes FILE.npz with 'embeddings' (N, D) float32 L2-normalised, 'names' (file "
            "paths relative to INPUT, or item names of a dataset spec) and, for dataset specs, "
            "'labels' and 'identity_names'. Unreadable images are skipped with a warning. "
            "Images of a folder that are not crops of the model's size are detected and "
            "aligned first (--no-detect: none is)."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="folder of images, or a dataset spec")
    add_option(
        p, "--output", aliases=["--out"], required=True, metavar="FILE.npz", help="output .npz file"
    )
    add_model_arguments(p)
    add_detector_arguments(p, auto=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import io
    from pathlib import Path

    if ":" not in args.input and not Path(args.input).exists():  # before the heavy imports
        raise FileNotFoundError(
            f"input {args.input} does not exist (a folder of images, or a dataset spec such as "
            "a .rec file or synthetic:20x5)"
        )
    import numpy as np

    from marginface.backbones.checkpoint import load_model
    from marginface.cli._use import describe_failure, embed_options, make_aligner, model_flip
    from marginface.evaluation.embed import embed_dataset
    from marginface.files import atomic_write_bytes, check_writable_file
    from marginface.inference.images import embed_files, find_images
    from marginface.text import printable

    options = embed_options(args)
    args.device = options.device
    out = Path(args.output)
    if out.suffix != ".npz":
        raise ValueError(f"--output must be a .npz file, got {out}")
    check_writable_file(out, "--output")
    model, info = load_model(args.checkpoint)
    options = options.replace(flip=model_flip(args, info))
    size = int(info.get("image_size") or 112)
    aligner = make_aligner(args, size)
    arrays: dict[str, np.ndarray] = {}
    source = Path(args.input)
    if source.is_dir() and not (source / "train.rec").is_file():
        paths = find_images(source)
        emb, kept, failed = embed_files(model, paths, size, options, aligner)
        for path, why in failed.items():
            print_warning(f"skipped {describe_failure(path, why)}")
        names = [p.relative_to(source).as_posix() for p in kept]
    else:
        from marginface.data import open_dataset

        # a dataset spec: detection only when asked (synthetic faces and packs are crops)
        aligner = aligner if args.detect else None
        dataset = open_dataset(args.input, image_size=size, aligner=aligner)
        emb = embed_dataset(model, dataset, options)
        labels = np.asarray(dataset.labels, dtype=np.int64)
        paths = getattr(dataset, "paths", None)
        if paths is not None:
            names = [str(p) for p in paths]
        else:
            ids = list(dataset.identity_names)
            names = [f"{ids[y]}/{i}" if ids else str(i) for i, y in enumerate(labels)]
        arrays["labels"] = labels
        arrays["identity_names"] = np.asarray(list(dataset.identity_names), dtype=str)
        if dataset.num_bad:
            print_warning(f"{dataset.num_bad} unreadable images were replaced by readable ones")
    arrays["embeddings"] = emb.astype(np.float32)
    arrays["names"] = np.asarray(names, dtype=str)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {printable(out)}: {emb.shape[0]} embeddings of dimension {emb.shape[1]}")
    return 0
