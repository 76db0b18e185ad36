"""A folder of photos to aligned crops (``marginface align --detect``).

Every image under the input folder (recursively; identity sub-folders are kept) is detected
(MTCNN, or an SCRFD ONNX file: :func:`marginface.data.detection.detect.make_detector`), one face
chosen, aligned to the ArcFace template and written to the same relative path under the output
folder (``.png`` by default). ``OUTPUT/detections.csv`` gets one row per photo: its status (``ok``,
``no_face`` or ``unreadable``), the number of faces found, and for the chosen face its box,
detector score and 5 landmarks in the photo's pixels. The CSV is appended as the work goes, after
each crop is written, so a run that stops can be started again: photos already in the CSV are
skipped. ``OUTPUT/detector.json`` names the detector (and an SCRFD file's sha256): a later run on
the same output with another detector is refused, so that one folder never mixes the landmarks
of two detectors.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from marginface.data.formats.folder import list_image_files
from marginface.text import printable, short_repr

CSV_NAME = "detections.csv"
#: the CSV is UTF-8, except that a file name's bytes that are not UTF-8 are written as they are
#: (Python's surrogate escapes), so that the CSV names the file exactly and a rerun finds it
_ERRORS = "surrogateescape"
DETECTOR_NAME = "detector.json"
CSV_FIELDS = ["path", "output", "status", "faces", "score", "x1", "y1", "x2", "y2"] + [
    f"{axis}{k}" for k in range(1, 6) for axis in ("lx", "ly")
]


@dataclass
class DetectAlignResult:
    """What :func:`detect_align_folder` did (this run and earlier runs on the same output)."""

    csv_path: Path
    aligned: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    skipped: int = 0


def list_photos(folder: Path) -> list[str]:
    """Image files under ``folder`` as sorted POSIX paths relative to it
    (:func:`~marginface.data.formats.folder.list_image_files`); ValueError when there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder {printable(folder)} does not exist")
    files = list_image_files(folder)
    if not files:
        raise ValueError(f"no image files under {printable(folder)}")
    return files


def output_names(photos: Sequence[str], extension: str) -> dict[str, str]:
    """``{photo: crop name}``; ValueError naming both photos when two would be written to the
    same crop (``a.jpg`` and ``a.png`` both to ``a.png``), raised before any work."""
    taken: dict[str, str] = {}
    for photo in photos:
        name = _output_name(photo, extension)
        if name in taken:
            raise ValueError(
                f"photos {printable(taken[name])} and {printable(photo)} would both be written "
                f"to {printable(name)}: rename one of them (crops keep the photo's name, with "
                f"the extension {extension})"
            )
        taken[name] = photo
    return {photo: name for name, photo in taken.items()}


def read_done(csv_path: Path) -> dict[str, dict[str, str]]:
    """Rows of an existing detections CSV by input path (empty when there is none); ValueError
    naming the file when it is not one (other columns, or damaged: a field beyond the csv
    module's limit, a NUL byte)."""
    if not csv_path.is_file():
        return {}
    with open(csv_path, newline="", encoding="utf-8", errors=_ERRORS) as f:
        reader = csv.DictReader(f)
        try:
            if reader.fieldnames != CSV_FIELDS:
                raise ValueError(
                    f"{printable(csv_path)} is not a detections CSV of this version "
                    f"(columns {short_repr(reader.fieldnames)})"
                )
            return {row["path"]: row for row in reader if row.get("status")}
        except csv.Error as exc:
            raise ValueError(
                f"{printable(csv_path)} line {reader.line_num}: damaged detections CSV ({exc}); "
                "remove it (its photos are then detected again) or choose another output folder"
            ) from None


# --- the work of one process -----------------------------------------------------------------
_STATE: dict[str, Any] = {}


def _init_worker(options: dict[str, Any], threads: int | None) -> None:
    import torch

    from marginface.data.detection.detect import FaceAligner, make_detector

    if threads is not None:
        torch.set_num_threads(threads)
    detector = make_detector(**options["detector"], threads=threads)
    _STATE["aligner"] = FaceAligner(detector, options["image_size"], options["select"])
    _STATE["options"] = options


def _output_name(relative: str, extension: str) -> str:
    return str(Path(relative).with_suffix(extension).as_posix())


def _process(relative: str) -> dict[str, str]:
    """Detect, align and write one photo; returns its CSV row."""
    from marginface.data.detection.detect import select_face
    from marginface.data.transforms import decode_image, save_image

    options, aligner = _STATE["options"], _STATE["aligner"]
    row = dict.fromkeys(CSV_FIELDS, "")
    row["path"] = relative
    try:
        image = decode_image(Path(options["folder"]) / relative)
    except (OSError, ValueError, SyntaxError, EOFError):
        row["status"], row["faces"] = "unreadable", "0"
        return row
    faces = aligner.detector.detect_one(image)
    row["faces"] = str(len(faces))
    face = select_face(faces, (image.height, image.width), aligner.select)
    if face is None:
        row["status"] = "no_face"
        return row
    crop = aligner.align(image, face)
    name = _output_name(relative, options["extension"])
    save = {"quality": 95} if options["extension"] == ".jpg" else {}
    save_image(crop, Path(options["output"]) / name, **save)
    row.update(status="ok", output=name, score=f"{face.score:.5f}")
    row.update(zip(("x1", "y1", "x2", "y2"), (f"{v:.2f}" for v in face.box), strict=True))
    for k, (x, y) in enumerate(np.asarray(face.landmarks), start=1):
        row[f"lx{k}"], row[f"ly{k}"] = f"{x:.2f}", f"{y:.2f}"
    return row


def _results(todo: Sequence[str], options: dict[str, Any], workers: int) -> Iterator[dict]:
    if workers <= 0:
        _init_worker(options, None)
        yield from map(_process, todo)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(options, 1)) as pool:
        yield from pool.imap(_process, todo, chunksize=4)


def detect_align_folder(
    folder: str | os.PathLike,
    output: str | os.PathLike,
    image_size: int = 112,
    select: str = "largest",
    min_face_size: float = 20.0,
    thresholds: Sequence[float] | None = None,
    device: str = "cpu",
    workers: int = 0,
    extension: str = ".png",
    progress: bool = True,
    detector: str | os.PathLike = "mtcnn",
) -> DetectAlignResult:
    """Detect and align every photo under ``folder`` into ``output`` (see the module docstring).

    Args:
        image_size: side of the aligned crops.
        select: which face of several: ``largest``, ``central`` or ``score``.
        min_face_size, thresholds, device: the detector's (:func:`make_detector`; thresholds
            None: the detector's defaults).
        detector: ``"mtcnn"`` or the path of an SCRFD ``.onnx`` file.
        workers: processes, each with its own detector on one CPU thread (0: this process).
        extension: ``.png`` (exact pixels) or ``.jpg`` (quality 95).
    """
    from marginface.data.detection.detect import SELECTIONS, describe_detector, make_detector

    folder, output = Path(folder), Path(output)
    if extension not in (".png", ".jpg"):
        raise ValueError(f"extension must be .png or .jpg, got {short_repr(extension)}")
    if select not in SELECTIONS:
        raise ValueError(
            f"face selection must be one of {', '.join(SELECTIONS)}, got {short_repr(select)}"
        )
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if output.resolve() == folder.resolve():
        raise ValueError("the output folder must differ from the photo folder")
    detector_options = {
        "detector": str(detector),
        "min_face_size": float(min_face_size),
        "thresholds": None if thresholds is None else tuple(float(t) for t in thresholds),
        "device": device,
    }
    # check the options and the weights before any work
    identity = describe_detector(make_detector(**detector_options))
    photos = list_photos(folder)
    if output.resolve().is_relative_to(folder.resolve()):  # never read our own crops back
        inner = output.resolve().relative_to(folder.resolve()).as_posix() + "/"
        photos = [p for p in photos if not p.startswith(inner)]
    output_names(photos, extension)  # two photos to one crop: refused before any work
    csv_path = output / CSV_NAME
    done = read_done(csv_path)
    _check_same_detector(output / DETECTOR_NAME, identity, bool(done))
    output.mkdir(parents=True, exist_ok=True)
    if not (output / DETECTOR_NAME).is_file():
        (output / DETECTOR_NAME).write_text(json.dumps(identity, indent=1) + "\n")
    todo = [p for p in photos if p not in done]
    result = DetectAlignResult(csv_path, skipped=len(photos) - len(todo))
    for row in done.values():
        _count(result, row)
    options = {
        "detector": detector_options,
        "image_size": image_size,
        "select": select,
        "folder": str(folder),
        "output": str(output),
        "extension": extension,
    }
    new_file = not csv_path.is_file()
    with open(csv_path, "a", newline="", encoding="utf-8", errors=_ERRORS) as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new_file:
            writer.writeheader()
        bar = tqdm(
            total=len(photos),
            initial=len(photos) - len(todo),
            desc="detecting",
            unit="img",
            disable=not progress,
        )
        with bar:
            for row in _results(todo, options, workers):
                writer.writerow(row)
                f.flush()
                _count(result, row)
                bar.update(1)
    return result


def _check_same_detector(path: Path, identity: dict, resumed: bool) -> None:
    """Refuse to add to an output folder aligned by another detector (an output without
    ``detector.json`` but with detections was made by MTCNN, before the file existed)."""
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path}: unreadable ({exc})") from None
    elif resumed:
        before = {"detector": "mtcnn"}
    else:
        return
    same = before.get("detector") == identity["detector"] and before.get("sha256") == identity.get(
        "sha256"
    )
    if not same:
        was = before.get("path", before.get("detector"))
        now = identity.get("path", identity["detector"])
        raise ValueError(
            f"{path.parent} holds faces aligned by {was}; this run's detector is {now}: "
            "give another --output"
        )


def _count(result: DetectAlignResult, row: dict[str, str]) -> None:
    if row["status"] == "ok":
        result.aligned += 1
    elif row["status"] == "no_face":
        result.no_face.append(row["path"])
    else:
        result.unreadable.append(row["path"])
