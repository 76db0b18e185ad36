"""``marginface pack FOLDER OUT.rec``: a folder dataset into an InsightFace RecordIO pack."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="pack a folder dataset into an InsightFace .rec/.idx",
        description=(
            "Pack FOLDER (one sub-folder per identity) into OUT.rec + OUT.idx in InsightFace's "
            "layout (record 0 header, image records, identity range records), readable by "
            "InsightFace's own MXNet reader. Also writes OUT.names (identity names) and a "
            "'property' file beside it. Image bytes are stored unchanged; unreadable images are "
            "left out with a warning."
        ),
    )
    parser.add_argument("folder", help="dataset folder: FOLDER/<identity>/<images>")
    parser.add_argument("output", help="output pack, e.g. data/train.rec")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from marginface.data.pack import pack_folder

    result = pack_folder(args.folder, args.output, progress=not args.quiet)
    print(
        f"wrote {result.rec_path} and {result.idx_path}: {result.images} images of "
        f"{result.identities} identities"
        + (f"; {len(result.bad)} unreadable images left out" if result.bad else "")
    )
    return 0
