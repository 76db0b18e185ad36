import numpy as np
import pytest
from PIL import Image, ImageDraw

from marginface.cli import main
from marginface.data.detection.align import (
    ARCFACE_TEMPLATE,
    align_face,
    read_landmarks,
    similarity_transform,
    template,
)


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_one():
    matrix = similarity(0.4, 1.7, 5.0, -3.0)
    src = np.random.default_rng(0).random((5, 2)) * 100
    np.testing.assert_allclose(similarity_transform(src, apply(matrix, src)), matrix, atol=1e-9)


def test_similarity_transform_is_least_squares_and_never_reflects():
    src = ARCFACE_TEMPLATE
    mirrored = src * np.array([-1.0, 1.0])  # a reflection is not a similarity
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    noisy = apply(similarity(-0.2, 0.5, 3, 4), src) + np.random.default_rng(1).normal(
        0, 0.5, (5, 2)
    )
    fit = similarity_transform(src, noisy)
    residual = np.abs(apply(fit, src) - noisy).max()
    assert residual < 2.0
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), src)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        similarity_transform(np.ones((5, 3)), np.ones((5, 3)))


def dotted_image(landmarks: np.ndarray, size=(200, 160)) -> Image.Image:
    image = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for x, y in landmarks:
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(255, 255, 255))
    return image


def dot_centres(image: Image.Image, near: np.ndarray) -> np.ndarray:
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    ys, xs = np.mgrid[: grey.shape[0], : grey.shape[1]]
    centres = []
    for x, y in near:
        mask = (np.abs(xs - x) < 8) & (np.abs(ys - y) < 8)
        w = grey * mask
        centres.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return np.array(centres)


@pytest.mark.parametrize("size", [112, 64])
def test_align_face_puts_landmarks_on_the_template(size):
    # landmarks of a face rotated by 25 degrees, scaled by 1.3, somewhere in a larger photo
    to_photo = similarity(np.deg2rad(25), 1.3, 40.0, 10.0)
    landmarks = np.round(apply(to_photo, ARCFACE_TEMPLATE))  # dots sit on whole pixels
    aligned = align_face(dotted_image(landmarks), landmarks, image_size=size)
    assert aligned.size == (size, size)
    # where the fitted similarity sends each (rounded) landmark: within rounding of the template
    expected = apply(similarity_transform(landmarks, template(size)), landmarks)
    np.testing.assert_allclose(expected, template(size), atol=0.6)
    np.testing.assert_allclose(dot_centres(aligned, expected), expected, atol=0.25)


def test_align_face_bad_landmarks():
    with pytest.raises(ValueError, match="10 numbers, got 8"):
        align_face(Image.new("RGB", (50, 50)), [1.0] * 8)
    with pytest.raises(ValueError, match="finite"):
        align_face(Image.new("RGB", (50, 50)), [float("nan")] * 10)


def test_align_cli_over_a_folder(tmp_path):
    photos = tmp_path / "photos"
    (photos / "ann").mkdir(parents=True)
    lines = []
    for i, angle in enumerate((0.0, -20.0)):
        landmarks = np.round(apply(similarity(np.deg2rad(angle), 0.9, 30, 20), ARCFACE_TEMPLATE))
        dotted_image(landmarks).save(photos / "ann" / f"{i}.png")
        lines.append(f"ann/{i}.png " + " ".join(f"{v:.3f}" for v in landmarks.reshape(-1)))
    lines.append("ann/missing.png " + " ".join(["50"] * 10))
    (tmp_path / "landmarks.txt").write_text("# path then 10 numbers\n" + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="missing.png"):
        code = main([
            "align", str(photos), "--landmarks", str(tmp_path / "landmarks.txt"),
            "--output", str(tmp_path / "aligned"), "--quiet",
        ])  # fmt: skip
    assert code == 0
    for i in range(2):
        out = Image.open(tmp_path / "aligned" / "ann" / f"{i}.png")
        assert out.size == (112, 112)
        landmarks = np.array(lines[i].split()[1:], dtype=float).reshape(5, 2)
        expected = apply(similarity_transform(landmarks, ARCFACE_TEMPLATE), landmarks)
        np.testing.assert_allclose(dot_centres(out, expected), expected, atol=0.25)


def test_landmarks_file_errors(tmp_path, capsys):
    bad = tmp_path / "lm.txt"
    bad.write_text("a.png 1 2 3\n")
    with pytest.raises(ValueError, match=r"lm\.txt line 1: expected a path and 10 numbers"):
        read_landmarks(bad)
    bad.write_text("a.png 1 2 3 4 5 6 7 8 9 ten\n")
    with pytest.raises(ValueError, match="line 1: landmarks must be numbers"):
        read_landmarks(bad)
    assert main(["align", str(tmp_path), "--landmarks", str(tmp_path / "none.txt"),
                 "--output", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "none.txt" in capsys.readouterr().err
