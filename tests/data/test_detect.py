"""MTCNN detection on a real photo (scikit-image's astronaut) and synthetic transforms of it.

The transform tests check equivariance: detecting on a moved, turned or scaled photo must give
the moved landmarks of the original. Tolerance: 10% of the inter-ocular distance, the usual
success threshold of landmark benchmarks (normalised mean error < 0.1); an error that large
would still put an eye of the aligned crop ~3.5 px off the template (IOD there is 35.2 px).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from marginface.data.detection.align import ARCFACE_TEMPLATE, similarity_transform, template
from marginface.data.detection.boxes import batched_nms, box_overlap, nms
from marginface.data.detection.detect import FaceAligner, NoFaceError, select_face


def iod(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: Image.Image, matrix: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``image`` moved by the 2x3 ``matrix`` (photo pixel centres -> new pixel centres)."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    inverse[:, 2] += 0.5 - 0.5 * inverse[:, :2].sum(axis=1)  # Pillow: centres at +0.5
    return image.transform(size, Image.AFFINE, tuple(inverse.reshape(-1)), Image.BILINEAR)


def rotation_about(angle_deg: float, scale: float, centre, shift=(0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.asarray(centre, dtype=float)
    return np.hstack([r, (c + np.asarray(shift) - r @ c)[:, None]])


@pytest.fixture(scope="module")
def reference(detector, astronaut):
    faces = detector.detect_one(astronaut)
    assert len(faces) == 1
    return faces[0]


def test_one_face_in_the_astronaut_photo(reference):
    face = reference
    assert face.score > 0.99
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    # left and right as seen in the image; eyes above nose above mouth
    assert lx < nx < rx and mlx < nx < mrx
    assert max(ly, ry) < ny < min(mly, mry)
    x1, y1, x2, y2 = face.box
    assert (face.landmarks[:, 0] > x1).all() and (face.landmarks[:, 0] < x2).all()
    assert (face.landmarks[:, 1] > y1).all() and (face.landmarks[:, 1] < y2).all()
    # an adult face in a 512 px portrait: eyes 30 to 60 px apart
    assert 30 < iod(face.landmarks) < 60


@pytest.mark.parametrize(
    ("angle", "scale", "shift"),
    [(0.0, 1.0, (-60.0, 25.0)), (20.0, 1.0, (0.0, 0.0)), (-25.0, 0.6, (10.0, -5.0)),
     (0.0, 0.35, (0.0, 0.0)), (10.0, 1.8, (-150.0, -60.0))],
)  # fmt: skip
def test_landmarks_follow_a_moved_photo(detector, astronaut, reference, angle, scale, shift):
    matrix = rotation_about(angle, scale, reference.landmarks.mean(0), shift)
    moved = warp(astronaut, matrix, astronaut.size)
    faces = detector.detect_one(moved)
    assert faces, "the face was lost"
    face = select_face(faces, (moved.height, moved.width), "largest")
    expected = apply(matrix, reference.landmarks)
    error = np.linalg.norm(face.landmarks - expected, axis=1).mean()
    assert error < 0.1 * iod(expected)


def test_mirror_swaps_left_and_right(detector, astronaut, reference):
    width = astronaut.width
    face = detector.detect_one(astronaut.transpose(Image.FLIP_LEFT_RIGHT))[0]
    mirrored = face.landmarks[[1, 0, 2, 4, 3]] * [-1, 1] + [width - 1, 0]
    error = np.linalg.norm(mirrored - reference.landmarks, axis=1).mean()
    assert error < 0.1 * iod(reference.landmarks)


def test_four_faces_in_one_picture_and_batches_agree(detector, astronaut):
    half = astronaut.resize((256, 256), Image.BILINEAR)
    grid = Image.new("RGB", (512, 512))
    for k in range(4):
        grid.paste(half, (256 * (k % 2), 256 * (k // 2)))
    faces = detector.detect_one(grid)
    assert len(faces) == 4
    centres = sorted(
        (round(f.landmarks[:, 0].mean() // 256), round(f.landmarks[:, 1].mean() // 256))
        for f in faces
    )
    assert centres == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # a batch of different sizes (padded together) gives each image's own detections
    alone = [detector.detect_one(half), faces]
    batch = detector.detect([half, grid])
    for a, b in zip(alone, batch, strict=True):
        assert len(a) == len(b)
        for fa, fb in zip(
            sorted(a, key=lambda f: tuple(f.box)),
            sorted(b, key=lambda f: tuple(f.box)),
            strict=True,
        ):
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-3)


def test_no_face_in_noise_or_flat_grey(detector):
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert detector.detect([noise, np.full((100, 100, 3), 128, np.uint8)]) == [[], []]
    aligner = FaceAligner(detector)
    with pytest.raises(NoFaceError):
        aligner(Image.fromarray(noise))
    assert FaceAligner(detector, fallback=True)(Image.fromarray(noise)).size == (320, 240)


def test_aligned_crop_puts_the_face_on_the_template(detector, astronaut, reference):
    crop = FaceAligner(detector)(astronaut)
    assert crop.size == (112, 112)
    # where the similarity puts the detected landmarks: the fit's residual is the face's own
    # shape against the template (pose, expression): the eyes within 10% of the template's
    # inter-ocular distance (35.2 px); this broad smile lifts and widens the mouth corners by
    # about 7 px, within a quarter of it
    fit = similarity_transform(reference.landmarks, template(112))
    residual = np.linalg.norm(apply(fit, reference.landmarks) - ARCFACE_TEMPLATE, axis=1)
    template_iod = iod(ARCFACE_TEMPLATE)
    assert (residual[:2] < 0.1 * template_iod).all()
    assert (residual < 0.25 * template_iod).all()
    # detecting again on the crop (enlarged 2x: MTCNN wants the face with a margin) finds the
    # landmarks where the warp sent them
    big = Image.new("RGB", (448, 448))
    big.paste(crop.resize((224, 224), Image.BILINEAR), (112, 112))
    again = detector.detect_one(big)[0].landmarks
    expected = (apply(fit, reference.landmarks) + 0.5) * 2 - 0.5 + 112
    assert np.linalg.norm(again - expected, axis=1).mean() < 0.1 * iod(expected)


def test_selection_largest_central_score(detector):
    from marginface.data.detection.detect import Face

    marks = np.zeros((5, 2))
    big = Face(np.array([0.0, 0.0, 100.0, 100.0]), marks, 0.90)
    centred = Face(np.array([180.0, 130.0, 220.0, 170.0]), marks, 0.95)
    sure = Face(np.array([300.0, 0.0, 350.0, 50.0]), marks, 0.99)
    faces = [big, centred, sure]
    assert select_face(faces, (300, 400), "largest") is big
    assert select_face(faces, (300, 400), "central") is centred
    assert select_face(faces, (300, 400), "score") is sure
    assert select_face([], (300, 400)) is None
    with pytest.raises(ValueError, match="largest, central, score"):
        select_face(faces, (300, 400), "first")


def test_nms_by_hand():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [2, 2, 8, 8], [0, 0, 10, 10.0]]
    )
    scores = torch.tensor([0.9, 0.95, 0.5, 0.8, 0.9])
    # IoU of boxes 0 and 1: 90 / 110 = 0.818; box 3 inside box 1: 36 / 100 (union), 1 (min)
    assert box_overlap(boxes[:1], boxes[1:2]).item() == pytest.approx(90 / 110)
    assert box_overlap(boxes[1:2], boxes[3:4], mode="min").item() == pytest.approx(1.0)
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 3, 2]  # 0 and 4 coincide: IoU 1
    # small blocks give the same answer as one block
    assert nms(boxes, scores, 0.5, block=2).tolist() == [1, 3, 2]
    # groups never suppress each other
    groups = torch.tensor([0, 1, 0, 0, 1])
    assert sorted(batched_nms(boxes, scores, groups, 0.5).tolist()) == [0, 1, 2, 3]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_missing_weights_name_the_package(tmp_path, monkeypatch):
    from marginface.data.detection.mtcnn import weights_folder

    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        weights_folder(tmp_path)
    monkeypatch.setenv("MARGINFACE_MTCNN_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pnet.pt, rnet.pt, onet.pt missing"):
        weights_folder()


def test_option_errors(detector):
    from marginface.data.detection.detect import FaceDetector

    with pytest.raises(ValueError, match="min_face_size"):
        FaceDetector(min_face_size=8)
    with pytest.raises(ValueError, match="thresholds"):
        FaceDetector(thresholds=(0.6, 0.7))
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect_one(np.zeros((10, 10), np.uint8))
    # min_face_size sets the first pyramid level: 12 / 40 here; levels shrink by the factor
    scales = FaceDetector(min_face_size=40).scales(480, 640)
    assert scales[0] == pytest.approx(0.3)
    assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu(astronaut, reference):
    from marginface.data.detection.detect import FaceDetector

    face = FaceDetector(device="cuda").detect_one(astronaut)[0]
    np.testing.assert_allclose(face.landmarks, reference.landmarks, atol=0.05)
    np.testing.assert_allclose(face.score, reference.score, atol=1e-4)


def test_the_python_example_of_docs_data_md_runs(detector, capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "data.md").read_text()
    section = text.split("## Photos in: face detection and alignment (MTCNN)")[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    exec(compile(code, "docs/data.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    expected = [
        line[2:]
        for line in code.splitlines()
        if line.startswith("# 1 [") or line.startswith("# [[")
    ]
    assert printed == expected
