"""5-point face alignment to the standard ArcFace 112x112 template (similarity transform).

The landmarks are, in order: left eye, right eye, nose tip, left and right mouth corners (left
and right as seen in the image).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from marginface.data.base import BadImageWarning
from marginface.data.transforms import decode_image, image_size_pair, save_image
from marginface.files import read_text, resolve_inside
from marginface.text import printable, short_repr

#: ArcFace's template for a 112x112 crop: (x, y) of the five landmarks.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template(image_size: int | tuple[int, int] = 112) -> np.ndarray:
    """The ArcFace template scaled to a square ``image_size`` crop (5, 2).

    For a non-square size (H, W) it is scaled by W / 112 and centred vertically.
    """
    height, width = image_size_pair(image_size)
    scale = width / 112.0
    points = ARCFACE_TEMPLATE * scale
    points[:, 1] += (height - 112.0 * scale) / 2
    return points


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    Umeyama (1991). Points are (N, 2), N >= 2. Returns the 2x3 matrix M with
    ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two (N, 2) point arrays, N >= 2; got {src.shape} and {dst.shape}")
    mean_s, mean_d = src.mean(0), dst.mean(0)
    s, d = src - mean_s, dst - mean_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("the source landmarks all coincide: no transform can be estimated")
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / var_s
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_d - scale * rotation @ mean_s
    return matrix


def check_landmarks(landmarks: np.ndarray | list, where: str = "landmarks") -> np.ndarray:
    """``landmarks`` as a (5, 2) float array; anything else is a ValueError naming ``where``."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.size != 10:
        raise ValueError(f"{where}: need 5 (x, y) landmarks = 10 numbers, got {points.size}")
    points = points.reshape(5, 2)
    if not np.isfinite(points).all():
        raise ValueError(f"{where}: landmarks must be finite numbers, got {points.tolist()}")
    return points


def align_face(
    image: Image.Image | np.ndarray,
    landmarks: np.ndarray | list,
    image_size: int | tuple[int, int] = 112,
) -> Image.Image:
    """Warp ``image`` so that its 5 ``landmarks`` land on the ArcFace template.

    Args:
        image: RGB Pillow image or (H, W, 3) uint8 array.
        landmarks: (5, 2) or 10 numbers, x y pairs in pixels of ``image``.
        image_size: output size (112 is the standard).

    Returns the aligned RGB crop (bilinear).
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    points = check_landmarks(landmarks)
    height, width = image_size_pair(image_size)
    forward = similarity_transform(points, template((height, width)))
    # Pillow's AFFINE maps output pixels back to input pixels: the inverse transform. Pillow
    # puts pixel centres at +0.5, landmarks (and OpenCV's warpAffine, which InsightFace uses)
    # at integers: shift in and out by half a pixel so both agree.
    full = np.vstack([forward, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]
    inverse[:, 2] += 0.5 - 0.5 * inverse[:, :2].sum(axis=1)
    return image.transform(
        (width, height), Image.AFFINE, tuple(inverse.reshape(-1)), resample=Image.BILINEAR
    )


def read_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Landmarks file: one line per image, ``relative/path x1 y1 ... x5 y5`` (spaces or tabs).

    Blank lines and lines starting with ``#`` are skipped. Returns ``{relative path: (5, 2)}``.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    for number, line in enumerate(read_text(path, "landmarks file").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        where = f"{path} line {number}"
        if len(fields) != 11:
            raise ValueError(f"{where}: expected a path and 10 numbers, got {len(fields)} fields")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(
                f"{where}: landmarks must be numbers: {short_repr(fields[1:])}"
            ) from None
        out[fields[0]] = check_landmarks(values, where)
    if not out:
        raise ValueError(f"landmarks file {path} lists no image")
    return out


@dataclass
class AlignResult:
    """What :func:`align_folder` did."""

    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def align_folder(
    folder: str | os.PathLike,
    landmarks_file: str | os.PathLike,
    output: str | os.PathLike,
    image_size: int | tuple[int, int] = 112,
    progress: bool = True,
) -> AlignResult:
    """Align every image listed in ``landmarks_file`` (paths relative to ``folder``) and write it
    to the same relative path under ``output`` (same format; JPEG at quality 95).

    Every listed path must stay inside ``folder``, and its output inside ``output`` (never onto
    its own source): a path that leaves them is a ValueError naming the landmarks file, raised
    before any image is written. A missing or unreadable image is warned about (naming it) and
    skipped.
    """
    folder, output = Path(folder), Path(output)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    entries = read_landmarks(landmarks_file)
    jobs = []
    for rel, points in entries.items():
        where = f"landmarks file {landmarks_file}, image {short_repr(rel)}"
        source = resolve_inside(folder, rel, where)
        target = resolve_inside(output, rel, where + " (output)")
        if target == source:
            raise ValueError(f"{where}: its output would overwrite the source image")
        jobs.append((rel, source, target, points))
    result = AlignResult()
    for rel, source, target, points in tqdm(
        jobs, desc="aligning", unit="img", disable=not progress
    ):
        try:
            aligned = align_face(decode_image(source), points, image_size)
        except (OSError, ValueError) as exc:  # unreadable image, or degenerate landmarks
            warnings.warn(f"cannot align {printable(source)}: {exc}", BadImageWarning, stacklevel=2)
            result.failed.append(rel)
            continue
        options = {"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}
        save_image(aligned, target, **options)
        result.written.append(target)
    return result
