"""A detected face and the image form the detectors read: what the MTCNN detector
(:mod:`marginface.data.detection.detect`), the SCRFD detector
(:mod:`marginface.data.detection.scrfd`) and the cache of their faces
(:mod:`marginface.data.detection.detect_cache`) share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class Face:
    """One detection: ``box`` (4,) x1 y1 x2 y2, ``landmarks`` (5, 2) x y, ``score`` in [0, 1]."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The side of the box's square (sqrt of its area)."""
        return float(np.sqrt(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0)))


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An RGB image as a (H, W, 3) uint8 array; anything else is a ValueError."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {array.dtype} {array.shape}")
    return array
