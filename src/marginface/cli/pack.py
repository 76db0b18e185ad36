"""``marginface pack FOLDER OUT.rec``: a folder dataset into an InsightFace RecordIO pack;
``marginface pack --pairs pairs.txt[::FOLDER] --output NAME.bin``: a pair list into an
InsightFace verification ``.bin``."""

from __future__ import annotations

import argparse

from marginface.cli._use import add_detector_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="pack a folder dataset into an InsightFace .rec/.idx, or a pair list into a .bin",
        description=(
            "Pack FOLDER (one sub-folder per identity) into OUT.rec + OUT.idx in InsightFace's "
            "layout (record 0 header, image records, identity range records), readable by "
            "InsightFace's own MXNet reader. Also writes OUT.names (identity names) and a "
            "'property' file beside it. Image bytes are stored unchanged; unreadable images are "
            "left out with a warning. With --pairs: write an LFW-style pair list (images "
            "FOLDER/name/name_%%04d.jpg) as an InsightFace verification .bin (pickle of the "
            "2N encoded images and N same/different flags), as lfw.bin or cfp_fp.bin are."
        ),
    )
    parser.add_argument("folder", nargs="?", help="dataset folder: FOLDER/<identity>/<images>")
    parser.add_argument("output", nargs="?", help="output pack, e.g. data/train.rec")
    parser.add_argument(
        "--pairs",
        metavar="PAIRS[::FOLDER]",
        help="an LFW-style pairs.txt (images in the folder beside it, or FOLDER): write a .bin",
    )
    parser.add_argument(
        "--output", dest="bin_output", metavar="FILE.bin", help="the .bin written for --pairs"
    )
    add_detector_arguments(parser)
    parser.add_argument("--device", default="cpu", help="--detect: torch device (default cpu)")
    parser.add_argument("--image-size", type=int, default=112, help="--detect: crop size (112)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pairs is not None:
        return _run_pairs(args)
    if args.folder is None or args.output is None or args.bin_output is not None:
        raise ValueError("give FOLDER OUT.rec, or --pairs PAIRS --output FILE.bin")
    from marginface.data.formats.pack import pack_folder

    result = pack_folder(args.folder, args.output, progress=not args.quiet)
    print(
        f"wrote {result.rec_path} and {result.idx_path}: {result.images} images of "
        f"{result.identities} identities"
        + (f"; {len(result.bad)} unreadable images left out" if result.bad else "")
    )
    return 0


def _run_pairs(args: argparse.Namespace) -> int:
    from marginface.cli._use import make_aligner
    from marginface.data.formats.verification import pairs_to_bin
    from marginface.files import check_writable_file

    if args.bin_output is None or args.folder is not None:
        raise ValueError("--pairs takes --output FILE.bin and no FOLDER")
    if not args.bin_output.endswith(".bin"):
        raise ValueError(f"--output must be a .bin file, got {args.bin_output}")
    check_writable_file(args.bin_output, "--output")  # before any image is read
    pairs_file, _, folder = args.pairs.partition("::")
    aligner = make_aligner(args, args.image_size)
    n, genuine = pairs_to_bin(pairs_file, args.bin_output, folder or None, aligner)
    print(f"wrote {args.bin_output}: {n} pairs ({genuine} genuine, {n - genuine} impostor)")
    return 0
