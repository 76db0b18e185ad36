"""``marginface synth``: preview the synthetic identity dataset or write it out as a folder."""

from __future__ import annotations

import argparse

from marginface.cli._use import add_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="contact sheet or image folder of the synthetic identity dataset",
        description=(
            "The embedded synthetic identity dataset (--data): --preview OUT.png saves a "
            "contact sheet (rows = identities, columns = images); --output DIR writes the whole "
            "spec as a "
            "folder dataset (DIR/<identity>/<n>.png) that 'marginface pack' can pack, with "
            "DIR/landmarks.txt (5 landmarks per image) that 'marginface align' reads."
        ),
    )
    add_option(
        parser,
        "--data",
        aliases=["--spec"],
        default="synthetic:8x10",
        metavar="SPEC",
        help="synthetic:IDS[xIMAGES][,seed=N][,difficulty=X][,first=K] (default synthetic:8x10)",
    )
    parser.add_argument("--preview", metavar="OUT.png", help="save a contact sheet here")
    parser.add_argument("--identities", type=int, default=8, help="contact sheet rows")
    parser.add_argument("--images", type=int, default=10, help="contact sheet columns")
    parser.add_argument("--output", metavar="DIR", help="write the dataset as an image folder")
    parser.add_argument("--format", default="png", choices=("png", "jpg"), help="for --output")
    parser.add_argument("--image-size", type=int, default=112, help="image size (default 112)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from marginface.data.synthetic import SyntheticFaces, SyntheticSpec, parse_synthetic_spec
    from marginface.files import check_writable_dir, check_writable_file

    if not args.preview and not args.output:
        raise ValueError("nothing to do: give --preview OUT.png and/or --output DIR")
    spec = parse_synthetic_spec(args.data)
    if args.image_size < 1 or args.identities < 1 or args.images < 1:
        raise ValueError("--image-size, --identities and --images must be >= 1")
    if args.preview:
        check_writable_file(args.preview, "--preview")
    if args.output:
        check_writable_dir(args.output, "--output")
    if args.preview:
        from marginface.data.export import contact_sheet
        from marginface.data.transforms import save_image

        # the sheet needs only its rows and columns: render no more than that
        rows = min(args.identities, spec.identities)
        cols = min(args.images, spec.images)
        small = SyntheticSpec(rows, cols, spec.seed, spec.difficulty, spec.first)
        dataset = SyntheticFaces(small, image_size=args.image_size)
        sheet = contact_sheet(dataset, identities=rows, images=cols)
        save_image(sheet, args.preview)
        print(f"saved a {rows}x{cols} contact sheet of {spec} to {args.preview}")
    if args.output:
        from marginface.data.export import write_image_folder

        dataset = SyntheticFaces(spec, image_size=args.image_size)
        n = write_image_folder(dataset, args.output, f".{args.format}", progress=not args.quiet)
        print(f"wrote {n} images of {spec.identities} identities to {args.output}")
    return 0
