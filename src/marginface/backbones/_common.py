"""Small helpers shared by the backbones: input checks and the spatial size after strides."""

from __future__ import annotations

from torch import Tensor

from marginface.checks import check_int


def check_input_size(input_size: int, minimum: int, name: str) -> int:
    """``input_size`` as an int, or a ValueError naming the backbone and the numbers."""
    return check_int(input_size, f"{name}: input_size", minimum)


def strided_size(size: int, times: int) -> int:
    """Spatial size after ``times`` 3x3 convolutions with stride 2 and padding 1: ceil(s / 2)."""
    for _ in range(times):
        size = (size - 1) // 2 + 1
    return size


def check_images(x: Tensor, name: str, input_size: int | None = None) -> None:
    """ValueError unless ``x`` is (B, 3, H, W) (and H = W = ``input_size`` when given)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} expects images of shape (B, 3, H, W), got {tuple(x.shape)}")
    if input_size is not None and (x.shape[2] != input_size or x.shape[3] != input_size):
        raise ValueError(
            f"{name} was built for {input_size}x{input_size} inputs (input_size={input_size}), "
            f"got {x.shape[2]}x{x.shape[3]}; build it with input_size={x.shape[2]}"
        )
