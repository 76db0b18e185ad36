"""Image decoding and the tensor transforms every dataset shares (Pillow + numpy, no torchvision).

An item image is a float32 tensor (3, H, W), RGB, normalised as InsightFace does:
``(pixel / 255 - 0.5) / 0.5``, so values lie in [-1, 1].
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marginface.files import atomic_write, open_regular

#: File extensions read as images by folder datasets (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff")


def image_size_pair(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``image_size`` (an int or ``(height, width)``) as ``(height, width)``; checked positive."""
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = (int(image_size[0]), int(image_size[1]))
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return size


class UnreadableImage(OSError):
    """One image could not be decoded: whatever Pillow raised for it (a truncated or unknown
    file, a decompression bomb, DecompressionBombWarning turned into an error, a corrupt
    header that trips an internal error) is wrapped in this one type."""


def decode_image(source: bytes | str | os.PathLike) -> Image.Image:
    """Decode an encoded image (bytes or a file path) fully into an RGB Pillow image.

    Grey, palette, RGBA and 16-bit images are converted to RGB. Anything that goes wrong while
    decoding raises :class:`UnreadableImage` (an OSError) with the cause in its message.
    """
    try:
        return _decode(source)
    except UnreadableImage:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of one image is "unreadable"
        raise UnreadableImage(f"{type(exc).__name__}: {exc}") from exc


def _decode(source: bytes | str | os.PathLike) -> Image.Image:
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode_file(io.BytesIO(bytes(source)))
    with open_regular(source, "image") as f:  # never a FIFO or a device
        return _decode_file(f)


def _decode_file(f) -> Image.Image:
    image = Image.open(f)
    with image:
        image.load()  # decode now: truncation errors surface here, not later
        if image.mode == "RGB":
            return image.copy()
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            array = np.asarray(image, dtype=np.float64)
            top = 65535.0 if array.max() > 255 else 255.0
            grey = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
            return grey.convert("RGB")
        return image.convert("RGB")


def save_image(image: Image.Image, path: str | os.PathLike, **options) -> Path:
    """Save ``image`` in the format its extension names, via a temporary file and a rename."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}")
    return atomic_write(path, lambda f: image.save(f, format=fmt, **options))


def resize(image: Image.Image, image_size: int | tuple[int, int]) -> Image.Image:
    """Resize to ``image_size`` (bilinear, antialiased); the image itself if already that size."""
    height, width = image_size_pair(image_size)
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.BILINEAR)


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB uint8 image (Pillow, or ndarray (H, W, 3)) -> float32 tensor (3, H, W) in [-1, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got array of shape {array.shape}")
    # numpy, not torch: tiny torch ops pay for the intra-op thread pool on every call
    chw = array.transpose(2, 0, 1).astype(np.float32)
    chw *= np.float32(1 / 127.5)
    chw -= np.float32(1.0)  # == (p / 255 - 0.5) / 0.5 up to float rounding
    return torch.from_numpy(chw)


def to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: (3, H, W) in [-1, 1] -> uint8 ndarray (H, W, 3)."""
    array = (tensor.detach().cpu().float().numpy().transpose(1, 2, 0) + 1.0) * 127.5
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def random_flip(tensor: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror (3, H, W) left-right with probability ``p`` (torch's RNG: seeded per worker)."""
    if torch.rand(()) < p:
        return tensor.flip(-1)
    return tensor


@dataclass(frozen=True)
class Transforms:
    """What is done to an item's tensor after it is decoded, resized and normalised: a random
    horizontal flip with probability ``flip`` (0: none, and no draw from torch's RNG).
    :data:`NO_TRANSFORMS` leaves items as they are; :data:`TRAINING_TRANSFORMS` is what
    ``marginface train`` applies.

    >>> NO_TRANSFORMS(torch.zeros(3, 2, 2)).shape
    torch.Size([3, 2, 2])
    """

    flip: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.flip, int | float) and 0.0 <= self.flip <= 1.0):
            raise ValueError(f"Transforms flip must be a probability in [0, 1], got {self.flip!r}")

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return random_flip(tensor, self.flip) if self.flip else tensor


#: items as decoded (evaluation, embedding, imprinting class centres)
NO_TRANSFORMS = Transforms()
#: the training transforms: a random horizontal flip, one image in two
TRAINING_TRANSFORMS = Transforms(flip=0.5)


def load_tensor(
    source: bytes | str | os.PathLike,
    image_size: int | tuple[int, int],
    transforms: Transforms = NO_TRANSFORMS,
    aligner: Callable[[Image.Image], Image.Image] | None = None,
) -> torch.Tensor:
    """Decode, convert to RGB, resize, normalise and apply ``transforms`` to one image.

    ``aligner`` (a :class:`marginface.data.detection.detect.FaceAligner`) turns a raw photo into the
    aligned crop of its face first; it raises ``NoFaceError`` (a ValueError) when there is none.
    An aligner with a ``cache`` is given the photo's content key (SHA-256 of its bytes), so
    that a photo it has seen is not detected again.
    """
    if aligner is not None and getattr(aligner, "cache", None) is not None:
        # the aligner keeps the faces it found by the photo's content: read the bytes once,
        # key them, decode them
        from marginface.data.detection.detect_cache import content_key

        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        else:
            data = Path(source).read_bytes()
        image = aligner(decode_image(data), key=content_key(data))
    else:
        image = decode_image(source)
        if aligner is not None:
            image = aligner(image)
    return transforms(to_tensor(resize(image, image_size)))
