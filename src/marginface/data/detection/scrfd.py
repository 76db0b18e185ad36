"""Face detection with an SCRFD ONNX model (InsightFace's detector), run by onnxruntime.

Most published face-recognition models (InsightFace's ``buffalo_*`` packs, arcface_torch's
backbones trained on MS1M-RetinaFace or WebFace) were aligned with the 5 landmarks of RetinaFace
or SCRFD, not MTCNN's; aligning with the detector a model was trained with gives the crops it
expects. SCRFD (Guo et al. 2021, "Sample and Computation Redistribution for Efficient Face
Detection") is a single-stage, anchor-point detector: no weights ship with marginface, the user
gives the ``.onnx`` file (InsightFace's ``det_10g.onnx``, ``det_500m.onnx``, ``det_2.5g.onnx``,
``scrfd_*_bnkps.onnx``; InsightFace releases them for non-commercial research only).

What the model computes (the layout of InsightFace's exported SCRFD models):

- Input: one RGB image letterboxed into ``input_size`` (the aspect ratio kept, the image at the
  top-left, zeros elsewhere), resized bilinearly, normalised as ``(x - 127.5) / 128``.
- Outputs, per stride ``s`` in 8, 16, 32 (or 8 ... 128 for the 5-level variants): a score
  (K, 1), box distances (K, 4) and, in the ``kps`` variants, landmark offsets (K, 10), each in
  units of ``s``, for the K = A * (H / s) * (W / s) anchor points of that level (A anchors per
  cell, 2 for the 3-level models, 1 for the 5-level ones). A batch axis of 1 may be in front.
- The anchor point of cell (i, j) is ``(j * s, i * s)``; a box is ``(cx - l, cy - t, cx + r,
  cy + b)``, landmark k is ``(cx + dx_k, cy + dy_k)``. Points above the score threshold are
  kept, mapped back to the photo (divided by the letterbox scale), and suppressed greedily at
  IoU 0.4 (:func:`marginface.data.detection.boxes.nms`).

The outputs are recognised by their shapes (last axis 1, 4 or 10; within a kind, the level with
most points is the finest stride), not by their names, which differ between exports.
Coordinates are those of :mod:`marginface.data.detection.detect`: boxes in pixel edges, landmarks in
pixel centres (InsightFace's convention, the alignment's).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from marginface.data.detection.boxes import nms
from marginface.data.detection.faces import Face, as_rgb_array
from marginface.files import file_sha256

#: the input side used when the model's input is dynamic (InsightFace's FaceAnalysis default)
DEFAULT_INPUT_SIZE = 640
#: IoU above which a lower-scored box is suppressed (InsightFace's SCRFD default)
NMS_THRESHOLD = 0.4
#: the strides of the 3-level and 5-level SCRFD variants
STRIDES = {3: (8, 16, 32), 5: (8, 16, 32, 64, 128)}


def letterbox_scale(height: int, width: int, input_h: int, input_w: int) -> tuple[int, int]:
    """The (height, width) an image is resized to inside an ``input_h x input_w`` input: the
    aspect ratio kept, the longer relative side filling the input (InsightFace's rule, with
    its integer truncation)."""
    if height / width > input_h / input_w:
        new_h = input_h
        new_w = int(new_h / (height / width))
    else:
        new_w = input_w
        new_h = int(new_w * (height / width))
    return max(new_h, 1), max(new_w, 1)


def anchor_centres(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """Anchor points (height * width * anchors, 2) x y of one level: cell (i, j) at
    ``(j * stride, i * stride)``, each repeated ``anchors`` times, row-major."""
    ys, xs = np.mgrid[:height, :width]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def decode_level(
    centres: np.ndarray, distances: np.ndarray, offsets: np.ndarray | None, stride: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes (K, 4) and landmarks (K, 5, 2) of one level from its raw outputs (in strides)."""
    d = distances * stride
    boxes = np.concatenate([centres - d[:, :2], centres + d[:, 2:]], axis=1)
    if offsets is None:
        return boxes, None
    points = centres[:, None, :] + (offsets * stride).reshape(-1, 5, 2)
    return boxes, points


class ScrfdDetector:
    """SCRFD face detector from an ONNX file, with the interface of
    :class:`marginface.data.detection.detect.FaceDetector` (``detect``, ``detect_one``).

    Args:
        path: the ``.onnx`` file.
        score_threshold: the face score a point must reach (InsightFace's default 0.5).
        min_face_size: detections whose box side (sqrt of its area) is smaller are dropped.
        input_size: (height, width) of the network input when the model's is dynamic (default
            640 x 640); a model with a fixed input uses its own.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).

    Raises ValueError (naming the file) for a file onnxruntime cannot load, or one whose
    outputs are not an SCRFD layout; ImportError when onnxruntime is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        score_threshold: float = 0.5,
        min_face_size: float = 0.0,
        input_size: tuple[int, int] | None = None,
        threads: int | None = None,
        nms_threshold: float = NMS_THRESHOLD,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a test dependency
            raise ImportError(
                "an SCRFD detector needs onnxruntime: pip install 'marginface[export]'"
            ) from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"detector {self.path}: no such file")
        if not 0 <= score_threshold < 1:
            raise ValueError(
                f"the detector's score threshold must lie in [0, 1), got {score_threshold}"
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"detector {self.path}: not an ONNX model onnxruntime can run ({first})"
            ) from None
        self.score_threshold = float(score_threshold)
        self.min_face_size = float(min_face_size)
        self.nms_threshold = float(nms_threshold)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(
                f"detector {self.path}: expected one NCHW image input, got {len(inputs)} inputs"
            )
        self.input_name = inputs[0].name
        fixed = inputs[0].shape[2:]
        if all(isinstance(v, int) and v > 0 for v in fixed):
            self.input_size = (int(fixed[0]), int(fixed[1]))
        else:
            self.input_size = tuple(input_size or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE))
        if any(v % 32 for v in self.input_size):
            raise ValueError(f"detector input size must be a multiple of 32, got {self.input_size}")
        n_out = len(self.session.get_outputs())
        if n_out not in (6, 9, 10, 15):
            raise ValueError(
                f"detector {self.path}: {n_out} outputs; an SCRFD model has 6 or 9 (3 strides) "
                "or 10 or 15 (5 strides)"
            )
        self.levels = 3 if n_out in (6, 9) else 5
        self.has_landmarks = n_out in (9, 15)
        if not self.has_landmarks:
            raise ValueError(
                f"detector {self.path}: this SCRFD model gives no landmarks (a *_kps / *_bnkps "
                "model is needed to align faces)"
            )
        self.sha256 = file_sha256(self.path)

    # ------------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """What decides the faces found (the key of :mod:`marginface.data.detection.detect_cache`):
        the file's sha256 and the thresholds, as :meth:`describe` records them."""
        return self.describe()

    def describe(self) -> dict:
        """What identifies this detector (written next to the crops it aligned)."""
        return {
            "detector": "scrfd",
            "path": str(self.path),
            "sha256": self.sha256,
            "input_size": list(self.input_size),
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "min_face_size": self.min_face_size,
        }

    def prepare(self, array: np.ndarray) -> tuple[np.ndarray, float]:
        """The network input (1, 3, H, W) float32 of an RGB uint8 image and its letterbox scale.
        The resize is bilinear without antialiasing and rounded to whole grey levels (as
        OpenCV's INTER_LINEAR on uint8, which InsightFace uses)."""
        input_h, input_w = self.input_size
        new_h, new_w = letterbox_scale(array.shape[0], array.shape[1], input_h, input_w)
        pixels = torch.from_numpy(np.array(array)).permute(2, 0, 1)[None].float()
        if (new_h, new_w) != array.shape[:2]:
            pixels = F.interpolate(
                pixels, size=(new_h, new_w), mode="bilinear", align_corners=False
            )
            pixels = pixels.round().clamp(0, 255)
        canvas = torch.zeros(1, 3, input_h, input_w)
        canvas[:, :, :new_h, :new_w] = pixels
        blob = ((canvas - 127.5) / 128.0).numpy()
        return blob, new_h / array.shape[0]

    def _outputs(self, blob: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(stride, scores (K,), distances (K, 4), offsets (K, 10)) per level."""
        raw = [
            np.asarray(o, dtype=np.float32) for o in self.session.run(None, {self.input_name: blob})
        ]
        raw = [o[0] if o.ndim == 3 else o for o in raw]
        kinds: dict[int, list[np.ndarray]] = {1: [], 4: [], 10: []}
        for o in raw:
            if o.ndim != 2 or o.shape[1] not in kinds:
                raise ValueError(
                    f"detector {self.path}: an output of shape {o.shape} is not SCRFD's"
                )
            kinds[o.shape[1]].append(o)
        if any(len(v) != self.levels for v in kinds.values()):
            raise ValueError(
                f"detector {self.path}: outputs are not {self.levels} levels of scores, "
                "boxes and landmarks"
            )
        for v in kinds.values():
            v.sort(key=len, reverse=True)  # finest stride (most points) first
        return [
            (stride, s[:, 0], b, k)
            for stride, s, b, k in zip(
                STRIDES[self.levels], kinds[1], kinds[4], kinds[10], strict=True
            )
        ]

    def detect_one(self, image: Image.Image | np.ndarray) -> list[Face]:
        """The faces of one image, highest score first."""
        array = as_rgb_array(image)
        blob, scale = self.prepare(array)
        input_h, input_w = self.input_size
        all_boxes, all_points, all_scores = [], [], []
        for stride, scores, distances, offsets in self._outputs(blob):
            cells = (input_h // stride) * (input_w // stride)
            if len(scores) % cells:
                raise ValueError(
                    f"detector {self.path}: {len(scores)} points at stride {stride} do not tile a "
                    f"{input_h}x{input_w} input"
                )
            centres = anchor_centres(
                input_h // stride, input_w // stride, stride, len(scores) // cells
            )
            keep = scores >= self.score_threshold
            if not keep.any():
                continue
            boxes, points = decode_level(centres[keep], distances[keep], offsets[keep], stride)
            all_boxes.append(boxes / scale)
            all_points.append(points / scale)
            all_scores.append(scores[keep])
        if not all_boxes:
            return []
        boxes = np.concatenate(all_boxes).astype(np.float64)
        points = np.concatenate(all_points).astype(np.float64)
        scores = np.concatenate(all_scores).astype(np.float64)
        kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.nms_threshold).numpy()
        faces = [Face(boxes[i], points[i], float(scores[i])) for i in kept]
        return [f for f in faces if f.size >= self.min_face_size]

    def detect(self, images: Sequence[Image.Image | np.ndarray]) -> list[list[Face]]:
        """The faces of each image (a list per image, highest score first)."""
        return [self.detect_one(im) for im in images]
