"""``marginface import``: a published face model (.pth, ONNX, TorchScript) -> a model folder."""

from __future__ import annotations

import argparse

from marginface.cli._use import add_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="turn a published face model (.pth, ONNX, TorchScript) into a model folder",
        description=(
            "Writes DIR/model.pt and DIR/model.json, which verify, embed, search, eval and "
            "export take as --checkpoint DIR. The format is detected from the file; the "
            "backbone of a state dict from its names and shapes; an ONNX model is converted to "
            "a trainable torch module and checked against onnxruntime (max abs difference of "
            "L2-normalised embeddings <= --atol, printed). model.json records the input "
            "contract (size, colour order, mean, std, flip test; InsightFace's for .pth and "
            "ONNX files unless the flags say otherwise) and the source (format, path, sha256, "
            "licence). Nothing is written unless every check passes. TorchScript is code: "
            "loading it compiles it (TorchScript ops only), so import only files you trust."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model file: .pth/.pt, .onnx or TorchScript")
    p.add_argument("--output", required=True, metavar="DIR", help="new model folder")
    p.add_argument(
        "--format",
        choices=["insightface-pth", "onnx", "torchscript", "state-dict"],
        help="the file's format (default: detected from its first bytes)",
    )
    p.add_argument(
        "--backbone",
        metavar="NAME",
        help="registered backbone a state dict is for (default: recognised from its shapes)",
    )
    add_option(
        p,
        "--licence",
        aliases=["--license"],
        metavar="TEXT",
        help="the model's licence, recorded in model.json",
    )
    p.add_argument(
        "--colour",
        type=str.upper,
        choices=["RGB", "BGR"],
        help="channel order the model takes (default: the format's, RGB for InsightFace)",
    )
    p.add_argument(
        "--mean",
        type=float,
        nargs="+",
        metavar="M",
        help="1 or 3 means in 0-255 pixel units, in the model's channel order (model input = "
        "(pixel - mean) / std; InsightFace: 127.5)",
    )
    p.add_argument(
        "--std", type=float, nargs="+", metavar="S", help="1 or 3 stds (InsightFace: 127.5)"
    )
    p.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the model's authors add the mirrored crop's embedding (default: yes)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="side of the input crops, where the file does not fix it",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="accepted max abs difference of L2-normalised embeddings to the original (1e-4)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from marginface.inference.importing import import_model

    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values is not None and len(values) not in (1, 3):
            raise ValueError(f"{flag} takes 1 or 3 numbers, got {len(values)}")
    info = import_model(
        args.model,
        args.output,
        format=args.format,
        backbone=args.backbone,
        licence=args.licence,
        colour=args.colour,
        mean=args.mean,
        std=args.std,
        flip_test=args.flip_test,
        image_size=args.image_size,
        atol=args.atol,
    )
    c, src = info["input"], info["source"]
    size, dim = info["image_size"], info["backbone_kwargs"]["embedding_size"]
    print(
        f"imported {args.model} ({src['format']}, sha256 {src['sha256'][:12]}...) as "
        f"{info['backbone']}: ({size}x{size}) -> {dim}-d embeddings"
    )
    print(
        f"input contract: {c['colour']}, (pixel - mean) / std with mean {c['mean']}, std "
        f"{c['std']}, flip test {'on' if c['flip_test'] else 'off'}"
    )
    check = src.get("check")
    if check:
        print(
            f"check: {check['against']} vs the converted module, max abs difference "
            f"{check['max_abs_diff_normalized']:.2e} on L2-normalised embeddings "
            f"(accepted {check['atol']:g})"
        )
    print(f"wrote {args.output}/model.pt and model.json; use it with --checkpoint {args.output}")
    return 0
