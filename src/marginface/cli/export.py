"""``marginface export``: ONNX export of a checkpoint's backbone, verified with onnxruntime."""

from __future__ import annotations

import argparse

from marginface.cli._use import add_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (dynamic batch axis), checked with onnxruntime",
        description=(
            "Writes OUT.onnx (--output) mapping 'input' (B, 3, S, S) to 'embedding' (B, D) (raw, "
            "not normalised); the input is the model's own contract (colour order, mean, std: "
            "marginface's models take RGB (p - 127.5) / 127.5), written with the embedding size "
            "and threshold into the file's metadata (key 'marginface'), where marginface import "
            "reads it back. The file appears only once onnxruntime agrees with "
            "PyTorch on random inputs of several batch sizes: max abs difference <= --atol on "
            "the normalised embeddings, and on the raw outputs relative to their magnitude "
            "where it exceeds 1."
        ),
    )
    p.add_argument("--checkpoint", metavar="PATH", help="run folder, model.pt or checkpoint.pt")
    add_option(
        p, "--output", aliases=["--onnx"], required=True, metavar="OUT.onnx", help="output file"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--atol", type=float, default=1e-4, help="accepted max abs difference")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from marginface.backbones.checkpoint import load_model
    from marginface.files import check_writable_file
    from marginface.inference.export import check_opset, export_onnx, onnx_metadata

    if Path(args.output).suffix != ".onnx":
        raise ValueError(f"--output must end with .onnx, got {args.output}")
    if not args.atol > 0:
        raise ValueError(f"--atol must be a number > 0, got {args.atol}")
    check_opset(args.opset)
    check_writable_file(args.output, "--output")
    model, info = load_model(args.checkpoint, contract=False)
    size = int(info.get("image_size") or 112)
    result = export_onnx(
        model,
        args.output,
        image_size=size,
        opset=args.opset,
        atol=args.atol,
        metadata=onnx_metadata(info),
    )
    c = info["input"]
    print(
        f"wrote {result['path']}: input (batch, 3, {size}, {size}) -> embedding (batch, "
        f"{result['embedding_size']}); onnxruntime vs PyTorch max abs difference "
        f"{result['max_abs_diff_normalized']:.2e} on normalised embeddings, "
        f"{result['max_abs_diff']:.2e} on raw outputs up to {result['output_scale']:.3g} "
        f"(atol {args.atol:g}); input contract {c['colour']}, (p - mean) / std with mean "
        f"{c['mean']}, std {c['std']}, flip test {'on' if c['flip_test'] else 'off'}"
    )
    return 0
