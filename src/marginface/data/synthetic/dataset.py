"""An embedded synthetic identity dataset: cartoon faces drawn by the code, no download.

Every identity is a face drawn from its own parameters (face shape, skin tone, eyes, brows, nose,
mouth, hair, facial hair, glasses, moles); every image of it varies pose (roll, yaw, pitch,
shift, scale), expression, lighting, background, clothing, blur, noise and occlusion.

Everything is a pure function of ``(seed, identity)`` (identity parameters) and
``(seed, identity, image)`` (image variation), rendered lazily by index: a dataset of a million
identities costs nothing until its images are read, and any worker process renders the same
pixels. Features come from small shared palettes (ten skin tones, eight hair colours, a few hair
and beard styles) and some identities are siblings of a shared "family" face, so that unrelated
identities can look alike.

``difficulty`` (default 1.0) scales the variation between images of one identity up and the
spread between identities down; at the default, plain softmax training does not reach perfect
verification on unseen identities.

Spec grammar (see :func:`parse_synthetic_spec`)::

    synthetic:IDS[xIMAGES][,seed=N][,difficulty=X][,first=K]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from marginface.data.base import FaceDataset
from marginface.data.synthetic.faces import render_face
from marginface.data.transforms import NO_TRANSFORMS, Transforms, to_tensor

__all__ = ["SyntheticFaces", "SyntheticSpec", "parse_synthetic_spec"]

DEFAULT_IMAGES_PER_IDENTITY = 20
MAX_IDENTITIES = 10**9
#: most identities and images one spec may hold: WebFace42M's scale (2M identities, 42M
#: images); beyond it the labels and names alone would not fit a machine's memory
MAX_SPEC_IDENTITIES = 5_000_000
MAX_SPEC_IMAGES = 50_000_000


# ---------------------------------------------------------------------------------------------
# spec
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticSpec:
    """The parameters of a synthetic dataset (see :func:`parse_synthetic_spec`)."""

    identities: int
    images: int = DEFAULT_IMAGES_PER_IDENTITY
    seed: int = 0
    difficulty: float = 1.0
    first: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.identities <= MAX_IDENTITIES:
            raise ValueError(
                f"synthetic identities must be 1..{MAX_IDENTITIES}, got {self.identities}"
            )
        if self.images < 1:
            raise ValueError(f"synthetic images per identity must be >= 1, got {self.images}")
        if self.identities > MAX_SPEC_IDENTITIES or self.identities * self.images > MAX_SPEC_IMAGES:
            raise ValueError(
                f"synthetic:{self.identities}x{self.images} is too large: at most "
                f"{MAX_SPEC_IDENTITIES:,} identities and {MAX_SPEC_IMAGES:,} images per spec "
                f"(use first=K to reach identities up to {MAX_IDENTITIES:,})"
            )
        if self.first + self.identities > MAX_IDENTITIES:
            raise ValueError(
                f"synthetic first + identities must not exceed {MAX_IDENTITIES:,}, got "
                f"{self.first + self.identities:,}"
            )
        if not 0 <= self.difficulty <= 4:
            raise ValueError(f"synthetic difficulty must be in [0, 4], got {self.difficulty}")
        if self.first < 0 or self.seed < 0:
            raise ValueError(
                f"synthetic first and seed must be >= 0, got {self.first}, {self.seed}"
            )

    def __str__(self) -> str:
        text = f"synthetic:{self.identities}x{self.images}"
        if self.seed:
            text += f",seed={self.seed}"
        if self.difficulty != 1.0:
            text += f",difficulty={self.difficulty:g}"
        if self.first:
            text += f",first={self.first}"
        return text


_SPEC_RE = re.compile(r"^synthetic:(\d+)(?:x(\d+))?((?:,[a-z]+=[^,]+)*)$")


def parse_synthetic_spec(spec: str) -> SyntheticSpec:
    """Parse ``synthetic:IDS[xIMAGES][,seed=N][,difficulty=X][,first=K]``.

    Examples: ``synthetic:1000`` (20 images each), ``synthetic:500x10,seed=3``,
    ``synthetic:200x10,first=100000`` (identities 100000..100199: unseen by a model trained on
    ``synthetic:1000``).
    """
    text = spec.strip().replace(" ", "")
    match = _SPEC_RE.match(text)
    if match is None:
        raise ValueError(
            f"bad synthetic spec {spec!r}: expected "
            "synthetic:IDS[xIMAGES][,seed=N][,difficulty=X][,first=K], e.g. synthetic:1000x20"
        )
    kwargs: dict[str, float | int] = {"identities": int(match.group(1))}
    if match.group(2):
        kwargs["images"] = int(match.group(2))
    for option in filter(None, match.group(3).split(",")):
        key, value = option.split("=", 1)
        try:
            if key in ("seed", "first"):
                kwargs[key] = int(value)
            elif key == "difficulty":
                kwargs[key] = float(value)
            else:
                raise ValueError(f"unknown option {key!r} (valid: seed, difficulty, first)")
        except ValueError as exc:
            raise ValueError(f"bad synthetic spec {spec!r}: {key}={value!r}: {exc}") from None
    return SyntheticSpec(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------
class SyntheticFaces(FaceDataset):
    """``IDS`` x ``IMAGES`` synthetic faces, rendered lazily by index.

    Item ``k`` is image ``k % images`` of identity ``first + k // images``; its label is
    ``k // images``. ``identity_names`` are ``"synth<absolute identity, 7 digits>"``.
    """

    def __init__(
        self,
        spec: SyntheticSpec | str,
        image_size: int | tuple[int, int] = 112,
        transforms: Transforms = NO_TRANSFORMS,
    ) -> None:
        super().__init__(image_size, transforms)
        self.spec = parse_synthetic_spec(spec) if isinstance(spec, str) else spec
        self._labels: np.ndarray | None = None
        self._names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return self.spec.identities

    @property
    def labels(self) -> np.ndarray:  # type: ignore[override]
        if self._labels is None:
            ids = np.arange(self.spec.identities, dtype=np.int64)
            self._labels = np.repeat(ids, self.spec.images)
        return self._labels

    @property
    def identity_names(self) -> list[str]:  # type: ignore[override]
        if self._names is None:
            first = self.spec.first
            # zero-padded so that a folder written from it sorts in label order
            self._names = [f"synth{first + i:07d}" for i in range(self.spec.identities)]
        return self._names

    def __len__(self) -> int:
        return self.spec.identities * self.spec.images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self.position(index)
        return self.load(index), index // self.spec.images

    def render(
        self, index: int, with_landmarks: bool = False
    ) -> Image.Image | tuple[Image.Image, np.ndarray]:
        """Item ``index`` as a Pillow image (no normalisation, no transforms); with
        ``with_landmarks`` also its 5 landmarks (5, 2) (see :func:`render_face`)."""
        label, image = divmod(index, self.spec.images)
        s = self.spec
        return render_face(
            s.seed, s.first + label, image, self.image_size, s.difficulty, with_landmarks
        )

    def load(self, index: int) -> torch.Tensor:
        return self.transforms(to_tensor(self.render(index)))

    def describe(self, index: int) -> str:
        label, image = divmod(index, self.spec.images)
        return f"synthetic identity {self.spec.first + label} image {image}"

    def __repr__(self) -> str:
        return f"SyntheticFaces({self.spec}, image_size={self.image_size})"
