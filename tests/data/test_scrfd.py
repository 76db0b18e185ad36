"""SCRFD decoding, NMS and letterboxing with tiny ONNX models the tests build themselves.

Each model ignores its image (its outputs are constants, plus 0 times the input so that the
graph uses it) and gives SCRFD's 9 outputs for a 64x64 input: scores (K, 1), box distances
(K, 4) and landmark offsets (K, 10) at strides 8, 16 and 32, with 2 anchors per cell, so
K = 128, 32 and 8. A few points get chosen scores and distances; the expected boxes are worked
out by hand in the tests from SCRFD's rule: the anchor of cell (i, j) at stride s is
(j s, i s), a box is (cx - l s, cy - t s, cx + r s, cy + b s), landmark k is (cx + dx_k s,
cy + dy_k s); boxes and landmarks are divided by the letterbox scale.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from marginface.cli import main
from marginface.data.detection.detect import FaceDetector, make_detector
from marginface.data.detection.scrfd import ScrfdDetector, anchor_centres, letterbox_scale

pytest.importorskip("onnxruntime")

SIDE = 64
STRIDES = (8, 16, 32)
#: the chosen points: (stride, cell row i, cell column j, anchor a, score, l t r b (strides))
POINTS = [
    (8, 3, 4, 0, 0.9, (2.0, 1.0, 3.0, 2.0)),  # anchor (32, 24): box (16, 16, 56, 40)
    (8, 3, 4, 1, 0.8, (2.0, 1.0, 3.0, 2.5)),  # same anchor, box (16, 16, 56, 44): IoU 0.91
    (16, 1, 0, 1, 0.7, (0.0, 0.5, 1.0, 1.5)),  # anchor (0, 16): box (0, 8, 16, 40)
    (32, 0, 0, 0, 0.3, (0.5, 0.5, 0.5, 0.5)),  # anchor (0, 0): below the 0.5 threshold
]


def landmark_offsets(n: int) -> np.ndarray:
    """Offsets (in strides) of point n's 5 landmarks: distinct per point and landmark."""
    return np.array([[0.1 * k + n, -0.2 * k + 0.5 * n] for k in range(5)], dtype=np.float32)


class FakeScrfd(nn.Module):
    """Constant SCRFD-shaped outputs; ``batched`` puts a batch axis of 1 in front, ``order``
    permutes the outputs (exports differ in their order and names)."""

    def __init__(self, batched: bool = False, order: list[int] | None = None) -> None:
        super().__init__()
        outputs = []
        levels = {}
        for s in STRIDES:
            k = (SIDE // s) ** 2 * 2
            levels[s] = [
                np.full((k, 1), 0.01, np.float32),
                np.ones((k, 4), np.float32),
                np.zeros((k, 10), np.float32),
            ]
        for n, (s, i, j, a, score, dist) in enumerate(POINTS):
            row = (i * (SIDE // s) + j) * 2 + a
            levels[s][0][row] = score
            levels[s][1][row] = dist
            levels[s][2][row] = landmark_offsets(n).reshape(-1)
        for kind in range(3):  # scores of all levels, then boxes, then landmarks (InsightFace's)
            outputs += [levels[s][kind] for s in STRIDES]
        if order is not None:
            outputs = [outputs[k] for k in order]
        for n, o in enumerate(outputs):
            self.register_buffer(f"out{n}", torch.from_numpy(o[None] if batched else o))
        self.count = len(outputs)

    def forward(self, x):
        zero = x.mean() * 0
        return tuple(getattr(self, f"out{n}") + zero for n in range(self.count))


def export(module: nn.Module, path) -> str:
    example = torch.zeros(1, 3, SIDE, SIDE)
    names = [f"o{n}" for n in range(module.count)]
    try:
        torch.onnx.export(
            module, (example,), str(path), input_names=["input.1"], output_names=names,
            opset_version=17, dynamo=False,
        )  # fmt: skip
    except TypeError:  # torch without the dynamo switch
        torch.onnx.export(
            module, (example,), str(path), input_names=["input.1"], output_names=names,
            opset_version=17,
        )  # fmt: skip
    return str(path)


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory) -> str:
    return export(FakeScrfd(), tmp_path_factory.mktemp("scrfd") / "fake.onnx")


def expected(n: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    s, i, j, _, _, (left, top, right, bottom) = POINTS[n]
    cx, cy = j * s, i * s
    box = np.array([cx - left * s, cy - top * s, cx + right * s, cy + bottom * s])
    points = np.array([cx, cy]) + landmark_offsets(n) * s
    return box / scale, points / scale


def test_anchor_centres_are_row_major_with_repeats():
    c = anchor_centres(2, 3, 16, 2)
    assert c.shape == (12, 2)
    assert c[:6].tolist() == [[0, 0], [0, 0], [16, 0], [16, 0], [32, 0], [32, 0]]
    assert c[6].tolist() == [0, 16]


@pytest.mark.parametrize(
    ("h", "w", "want"), [(64, 64, (64, 64)), (128, 64, (64, 32)), (50, 100, (32, 64))]
)
def test_letterbox_keeps_the_aspect_ratio(h, w, want):
    assert letterbox_scale(h, w, 64, 64) == want


def test_decoding_and_nms_give_the_hand_computed_faces(fake_model):
    detector = ScrfdDetector(fake_model)
    assert detector.input_size == (SIDE, SIDE)  # the model's fixed input is used
    faces = detector.detect_one(np.zeros((SIDE, SIDE, 3), np.uint8))
    # point 1 overlaps point 0 (IoU 0.91 > 0.4) and scores lower: suppressed; point 3 is below
    # the threshold: two faces, best first
    assert [round(f.score, 6) for f in faces] == [0.9, 0.7]
    for face, n in zip(faces, (0, 2), strict=True):
        box, points = expected(n)
        np.testing.assert_allclose(face.box, box, atol=1e-5)
        np.testing.assert_allclose(face.landmarks, points, atol=1e-5)


def test_a_lower_threshold_keeps_the_low_point_and_nms_still_applies(fake_model):
    faces = ScrfdDetector(fake_model, score_threshold=0.2).detect_one(
        np.zeros((64, 64, 3), np.uint8)
    )
    assert [round(f.score, 6) for f in faces] == [0.9, 0.7, 0.3]
    np.testing.assert_allclose(faces[2].box, expected(3)[0], atol=1e-5)


def test_a_stricter_nms_keeps_the_overlapping_box(fake_model):
    # IoU of points 0 and 1 = (40 * 24) / (40 * 28) = 0.857: kept when the threshold is 0.9
    faces = ScrfdDetector(fake_model, nms_threshold=0.9).detect_one(np.zeros((64, 64, 3), np.uint8))
    assert [round(f.score, 6) for f in faces] == [0.9, 0.8, 0.7]


@pytest.mark.parametrize(("h", "w", "scale"), [(128, 128, 0.5), (100, 50, 0.64), (32, 64, 1.0)])
def test_boxes_and_landmarks_are_mapped_back_through_the_letterbox(fake_model, h, w, scale):
    # 128x128 -> 64x64 (scale 0.5); 100x50 -> 64x32 (scale 64 / 100); 32x64 stays (scale 1)
    faces = ScrfdDetector(fake_model).detect_one(np.zeros((h, w, 3), np.uint8))
    box, points = expected(0, scale)
    np.testing.assert_allclose(faces[0].box, box, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(faces[0].landmarks, points, rtol=1e-5, atol=1e-4)


def test_batched_and_reordered_outputs_decode_the_same(tmp_path, fake_model):
    order = [8, 0, 4, 2, 6, 1, 3, 7, 5]
    other = export(FakeScrfd(batched=True, order=order), tmp_path / "batched.onnx")
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    a, b = ScrfdDetector(fake_model).detect_one(image), ScrfdDetector(other).detect_one(image)
    assert len(a) == len(b) == 2
    for fa, fb in zip(a, b, strict=True):
        np.testing.assert_array_equal(fa.box, fb.box)
        np.testing.assert_array_equal(fa.landmarks, fb.landmarks)


def test_min_face_size_drops_small_boxes(fake_model):
    # face 0: 40x24 (side 31.0); face 2: 16x32 (side 22.6)
    faces = ScrfdDetector(fake_model, min_face_size=25).detect_one(np.zeros((64, 64, 3), np.uint8))
    assert [round(f.score, 6) for f in faces] == [0.9]


def test_input_preparation_is_the_insightface_blob(fake_model):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    blob, scale = ScrfdDetector(fake_model).prepare(image)
    assert scale == 1.0 and blob.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(blob[0, :, :32].transpose(1, 2, 0), (image - 127.5) / 128.0)
    np.testing.assert_allclose(blob[0, :, 32:], -127.5 / 128.0)  # zero padding, normalised


def test_not_an_onnx_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "det.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ValueError, match=r"det\.onnx: not an ONNX model"):
        ScrfdDetector(bad)


class TwoOutputs(nn.Module):
    count = 2

    def forward(self, x):
        return x.mean(dim=(2, 3)), x.amax(dim=(2, 3))


def test_a_model_that_is_not_scrfd_is_refused(tmp_path):
    path = export(TwoOutputs(), tmp_path / "two.onnx")
    with pytest.raises(ValueError, match="2 outputs; an SCRFD model has 6 or 9"):
        ScrfdDetector(path)


def test_make_detector_picks_mtcnn_or_scrfd(fake_model):
    assert isinstance(make_detector("mtcnn"), FaceDetector)
    scrfd = make_detector(fake_model, min_face_size=12, thresholds=(0.6,))
    assert isinstance(scrfd, ScrfdDetector) and scrfd.score_threshold == 0.6
    with pytest.raises(ValueError, match="one score threshold"):
        make_detector(fake_model, thresholds=(0.6, 0.7, 0.7))


def test_align_detect_with_an_scrfd_file(tmp_path, fake_model, capsys):
    photos = tmp_path / "photos" / "anna"
    photos.mkdir(parents=True)
    Image.new("RGB", (SIDE, SIDE), (90, 120, 150)).save(photos / "anna_0001.png")
    out = tmp_path / "aligned"
    argv = ["align", "--detect", str(tmp_path / "photos"), "--output", str(out)]
    assert main([*argv, "--detector", fake_model, "--select", "score", "--quiet"]) == 0
    assert (out / "anna" / "anna_0001.png").is_file()
    row = (out / "detections.csv").read_text().splitlines()[1].split(",")
    assert row[2] == "ok" and float(row[4]) == pytest.approx(0.9)
    assert [float(v) for v in row[9:11]] == pytest.approx(expected(0)[1][0].tolist(), abs=0.01)
    record = json.loads((out / "detector.json").read_text())
    assert record["detector"] == "scrfd" and len(record["sha256"]) == 64
    capsys.readouterr()
    # the same output folder with another detector: refused, nothing mixed
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give another --output" in err
    # MTCNN's three thresholds do not fit SCRFD
    assert main([*argv, "--detector", fake_model, "--thresholds", "0.6,0.7,0.7"]) == 2
    assert "--thresholds must be one number" in capsys.readouterr().err
    assert main([*argv, "--detector", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx: no such file" in capsys.readouterr().err
