import io

import numpy as np
import pytest
import torch
from PIL import Image

from marginface.data.transforms import (
    decode_image,
    image_size_pair,
    load_tensor,
    random_flip,
    to_pixels,
    to_tensor,
)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_to_tensor_normalises_like_insightface():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    pixels[..., 1] = 255 - pixels[..., 0]
    tensor = to_tensor(pixels)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 16, 16)
    expected = (pixels.astype(np.float64) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(tensor.numpy().transpose(1, 2, 0), expected, atol=1e-6)
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    assert (to_pixels(tensor) == pixels).all()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "1"])
def test_any_mode_decodes_to_rgb(mode):
    image = Image.fromarray(np.full((8, 10), 200, dtype=np.uint8)).convert(mode)
    fmt = "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (10, 8)


@pytest.mark.parametrize("fmt", ["BMP", "PPM", "JPEG", "PNG", "TIFF"])
def test_formats_and_grey_pgm(fmt, tmp_path):
    grey = Image.fromarray(np.full((9, 7), 77, dtype=np.uint8))
    path = tmp_path / f"x.{fmt.lower()}"
    (grey if fmt != "JPEG" else grey.convert("RGB")).save(path, format=fmt)
    decoded = np.asarray(decode_image(path))
    assert decoded.shape == (9, 7, 3)
    assert abs(int(decoded.mean()) - 77) <= 2


def test_resize_and_flip():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))
    tensor = load_tensor(encode(image, "PNG"), 16)
    assert tensor.shape == (3, 16, 16)
    torch.manual_seed(0)
    flips = [not torch.equal(random_flip(tensor), tensor) for _ in range(200)]
    assert 60 < sum(flips) < 140  # about half
    assert torch.equal(random_flip(tensor, p=1.0), tensor.flip(-1))


def test_truncated_image_raises():
    data = encode(Image.new("RGB", (32, 32), (10, 20, 30)), "JPEG")
    with pytest.raises(OSError):
        decode_image(data[: len(data) // 2])
    with pytest.raises(OSError):
        decode_image(b"not an image at all")


def test_image_size_pair():
    assert image_size_pair(112) == (112, 112)
    assert image_size_pair((96, 112)) == (96, 112)
    with pytest.raises(ValueError, match="positive"):
        image_size_pair(0)
