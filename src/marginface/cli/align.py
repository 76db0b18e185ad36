"""``marginface align FOLDER --landmarks FILE --output DIR``: 5-point alignment to 112x112."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="align faces to the ArcFace 112x112 template from 5 landmarks",
        description=(
            "Align every image listed in the landmarks file (one line per image: its path "
            "relative to FOLDER, then x y of left eye, right eye, nose tip, left and right mouth "
            "corners) with a similarity transform onto the ArcFace template, and write it to the "
            "same relative path under DIR."
        ),
    )
    parser.add_argument("folder", help="folder the landmark paths are relative to")
    parser.add_argument("--landmarks", required=True, help="landmarks file (path + 10 numbers)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--image-size", type=int, default=112, help="output size (default 112)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from marginface.data.align import align_folder
    from marginface.files import check_writable_dir

    if args.image_size < 1:
        raise ValueError(f"--image-size must be >= 1, got {args.image_size}")
    check_writable_dir(args.output, "--output")
    result = align_folder(
        args.folder, args.landmarks, args.output, args.image_size, progress=not args.quiet
    )
    print(f"aligned {len(result.written)} images into {args.output}", end="")
    if result.failed:
        print(f"; {len(result.failed)} failed: {', '.join(result.failed[:5])}", end="")
        print(" ..." if len(result.failed) > 5 else "", end="")
    print()
    return 1 if result.failed and not result.written else 0
