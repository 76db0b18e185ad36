"""``marginface align``: faces to 112x112 crops on the ArcFace template, from given 5-point
landmarks (``--landmarks FILE``) or from the MTCNN detector (``--detect``)."""

from __future__ import annotations

import argparse

from marginface.cli._use import add_detector_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="align faces to the ArcFace 112x112 template (given landmarks, or --detect)",
        description=(
            "With --landmarks: align every image listed in the landmarks file (one line per "
            "image: its path relative to FOLDER, then x y of left eye, right eye, nose tip, left "
            "and right mouth corners) with a similarity transform onto the ArcFace template, and "
            "write it to the same relative path under DIR. With --detect: find the faces of "
            "every photo under FOLDER (MTCNN), keep one (--select), align it by its 5 landmarks "
            "and write DIR/<same relative path>.png (identity folders kept) plus "
            "DIR/detections.csv (status, box, score and landmarks of every photo; photos without "
            "a face are listed there). A second run on the same DIR skips the photos already in "
            "the CSV."
        ),
    )
    parser.add_argument("folder", help="folder of photos (the landmark paths are relative to it)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--landmarks", help="landmarks file (path + 10 numbers)")
    mode.add_argument(
        "--detect", action="store_true", help="find the landmarks (MTCNN, or --detector FILE.onnx)"
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--image-size", type=int, default=112, help="output size (default 112)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="--detect: processes, one CPU thread each (default 0: this process)",
    )
    parser.add_argument(
        "--format", choices=["png", "jpg"], default="png", help="--detect: crop format (png)"
    )
    add_detector_arguments(parser, switch=False)
    parser.add_argument("--device", default="cpu", help="--detect: torch device (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.detect:
        return _run_detect(args)
    from marginface.data.detection.align import align_folder
    from marginface.files import check_writable_dir
    from marginface.text import printable

    if args.image_size < 1:
        raise ValueError(f"--image-size must be >= 1, got {args.image_size}")
    check_writable_dir(args.output, "--output")
    result = align_folder(
        args.folder, args.landmarks, args.output, args.image_size, progress=not args.quiet
    )
    print(f"aligned {len(result.written)} images into {printable(args.output)}", end="")
    if result.failed:
        failed = ", ".join(printable(p) for p in result.failed[:5])
        print(f"; {len(result.failed)} failed: {failed}", end="")
        print(" ..." if len(result.failed) > 5 else "", end="")
    print()
    return 1 if result.failed and not result.written else 0


def _run_detect(args: argparse.Namespace) -> int:
    from marginface.cli._use import detector_options
    from marginface.data.detection.detect_folder import detect_align_folder
    from marginface.text import printable

    result = detect_align_folder(
        args.folder,
        args.output,
        image_size=args.image_size,
        select=args.select,
        device=args.device,
        workers=args.workers,
        extension=f".{args.format}",
        progress=not args.quiet,
        **detector_options(args),
    )
    total = result.aligned + len(result.no_face) + len(result.unreadable)
    print(
        f"aligned {result.aligned} of {total} photos into {printable(args.output)}"
        + (f" ({result.skipped} done by an earlier run)" if result.skipped else "")
        + f"; detections in {printable(result.csv_path)}"
    )
    for kind, paths in (("no face found", result.no_face), ("unreadable", result.unreadable)):
        if paths:
            more = " ..." if len(paths) > 5 else ""
            shown = ", ".join(printable(p) for p in paths[:5])
            print(f"{kind}: {len(paths)} photos: {shown}{more}")
    return 1 if total and not result.aligned else 0
