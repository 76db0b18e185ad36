"""Pair-set formats: how :func:`marginface.data.open_pairs` turns a spec into a pair set.

A format is a name, a test of the spec (``matches(spec) -> bool``) and an opener
``open(spec, image_size, aligner) -> PairSet``, registered with :func:`register_pair_format`.
``open_pairs`` asks the formats latest-registered first, so a format added by a project is
tried before the built-in ones (``bin``, ``pairs-txt``, ``pairs-csv``, registered below); a
spec that no pair-set format matches is a dataset spec, from which pairs are generated. A
file of pairs is used whole, as its protocol defines (``max_pairs`` and ``seed`` are the
generated pairs'). Worked example: tests/data/test_add_a_pair_format.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from marginface.data.formats.registry import Format, FormatRegistry
from marginface.data.formats.verification import PairSet

PairOpener = Callable[..., PairSet]

#: ``FILE::FOLDER``: a list of pairs whose images lie in FOLDER rather than beside it
FOLDER_SEPARATOR = "::"


#: the pair-set formats (:class:`~marginface.data.formats.registry.Format`: ``open(spec, image_size,
#: aligner)``)
PAIR_FORMATS = FormatRegistry("pair-set format")
PairFormat = Format


def register_pair_format(
    name: str, matches: Callable[[str], bool], spec_help: str = ""
) -> Callable[[PairOpener], PairOpener]:
    """Decorator: make ``opener(spec, image_size, aligner)`` open the pair-set specs for which
    ``matches(spec)`` is true. ``aligner`` is None unless the caller detects faces in raw
    photos (``--detect``)."""
    return PAIR_FORMATS.register(name, matches, spec_help)


def list_pair_formats() -> list[str]:
    """The registered pair-set format names, latest first (the order :func:`find_pair_format`
    tries)."""
    return PAIR_FORMATS.names()


def find_pair_format(spec: str) -> PairFormat | None:
    """The pair-set format that opens ``spec`` (the latest registered that matches), or None
    (``spec`` is then a dataset spec)."""
    return PAIR_FORMATS.find(spec)


def file_and_folder(spec: str) -> tuple[str | Path, str | None]:
    """``FILE::FOLDER`` -> ``("FILE", "FOLDER")``; a plain path -> ``(Path(spec), None)``."""
    if FOLDER_SEPARATOR in spec:
        pairs_file, folder = spec.split(FOLDER_SEPARATOR, 1)
        return pairs_file, folder
    return Path(spec), None


def _is_csv_list(spec: str) -> bool:
    pairs_file, folder = file_and_folder(spec)
    return str(pairs_file).endswith(".csv") if folder is not None else pairs_file.suffix == ".csv"


def _is_txt_list(spec: str) -> bool:
    """A ``pairs.txt``, or any ``FILE::FOLDER`` but a ``.csv`` one."""
    pairs_file, folder = file_and_folder(spec)
    return not _is_csv_list(spec) if folder is not None else pairs_file.suffix == ".txt"


@register_pair_format("pairs-csv", _is_csv_list, "a .csv of columns a,b,same (or FILE.csv::FOLDER)")
def _open_csv(spec: str, image_size, aligner) -> PairSet:
    from marginface.data.formats.verification import open_pairs_csv

    pairs_file, folder = file_and_folder(spec)
    return open_pairs_csv(pairs_file, folder, image_size=image_size, aligner=aligner)


@register_pair_format("pairs-txt", _is_txt_list, "a pairs.txt (or pairs.txt::FOLDER)")
def _open_txt(spec: str, image_size, aligner) -> PairSet:
    from marginface.data.formats.verification import open_pairs_txt

    pairs_file, folder = file_and_folder(spec)
    return open_pairs_txt(pairs_file, folder, image_size=image_size, aligner=aligner)


@register_pair_format(
    "bin",
    lambda spec: FOLDER_SEPARATOR not in spec and Path(spec).suffix == ".bin",
    "a .bin (lfw.bin, cfp_fp.bin, agedb_30.bin ...)",
)
def _open_bin(spec: str, image_size, aligner) -> PairSet:
    from marginface.data.formats.verification import open_bin

    return open_bin(Path(spec), image_size=image_size, aligner=aligner)
