"""Face detection with 5 landmarks (MTCNN), and photos to aligned crops.

The cascade (Zhang et al. 2016): P-Net runs over an image pyramid and proposes windows; R-Net
rescores and refines 24x24 crops of them; O-Net rescores 48x48 crops and gives the box and the
5 landmarks (left eye, right eye, nose tip, left and right mouth corners, left and right as seen
in the image), the points :func:`marginface.data.detection.align.align_face` maps onto the ArcFace
template. The networks and their weights are :mod:`marginface.data.detection.mtcnn`'s.

Coordinates: boxes ``(x1, y1, x2, y2)`` in pixel edges (see :mod:`marginface.data.detection.boxes`);
landmarks in pixel centres (pixel ``(i, j)`` is the point ``x = j, y = i``), the convention of
the alignment, of the original MTCNN and of InsightFace.

A batch of images is padded with black to a common size and goes through each pyramid level in
one P-Net pass; R-Net and O-Net see the crops of all images together.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from marginface.data.detection.boxes import batched_nms
from marginface.data.detection.faces import Face, as_rgb_array

#: Ways to choose one face among several: the largest box, the box whose centre is nearest the
#: image centre, or the highest detector score.
SELECTIONS = ("largest", "central", "score")


def _resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (N, 3, h, w) to ``size``: pixel-area averaging when shrinking (no aliasing), bilinear
    when enlarging (as OpenCV's INTER_AREA does)."""
    if images.shape[-2] >= size[0] and images.shape[-1] >= size[1]:
        return F.interpolate(images, size=size, mode="area")
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _normalise(pixels: Tensor) -> Tensor:
    return (pixels - 127.5) * 0.0078125


def _square(boxes: Tensor) -> Tensor:
    """Boxes (N, 4) grown to squares of side max(w, h) around the same centre."""
    wh = boxes[:, 2:] - boxes[:, :2]
    side = wh.max(dim=1).values
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return torch.cat([centre - side[:, None] / 2, centre + side[:, None] / 2], dim=1)


def _regress(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Apply the networks' box offsets (N, 4), each a fraction of the box's width or height."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * wh


class FaceDetector:
    """MTCNN face detector with 5 landmarks.

    Args:
        min_face_size: the smallest face side (pixels) searched for; the pyramid's first level
            scales the image by 12 / min_face_size (P-Net's window is 12 pixels).
        thresholds: face probabilities P-Net, R-Net and O-Net must exceed.
        factor: scale ratio between pyramid levels (0.709 ~ 1/sqrt(2): area halves).
        device: torch device for the networks and images.
        weights: folder with pnet.pt, rnet.pt, onet.pt (default: see
            :func:`marginface.data.detection.mtcnn.weights_folder`).
        max_batch: crops per R-Net / O-Net forward pass (bounds GPU memory).
    """

    def __init__(
        self,
        min_face_size: float = 20.0,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str | torch.device = "cpu",
        weights: str | None = None,
        max_batch: int = 512,
    ) -> None:
        from marginface.data.detection.mtcnn import load_networks

        if not (math.isfinite(min_face_size) and min_face_size >= 12):
            raise ValueError(
                f"min_face_size must be a finite number >= 12 pixels, got {min_face_size}"
            )
        if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
            raise ValueError(f"thresholds must be 3 probabilities in [0, 1), got {thresholds}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.device = torch.device(device)
        self.max_batch = int(max_batch)
        self.pnet, self.rnet, self.onet = (n.to(self.device) for n in load_networks(weights))
        self._settings: dict | None = None

    def settings(self) -> dict:
        """What decides the faces found (the key of :mod:`marginface.data.detection.detect_cache`):
        the minimum face size, thresholds, pyramid factor and a digest of the three networks'
        weights (not the device)."""
        if self._settings is None:
            import hashlib

            digest = hashlib.sha256()
            for net in (self.pnet, self.rnet, self.onet):
                for name, tensor in sorted(net.state_dict().items()):
                    digest.update(name.encode())
                    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._settings = {
                "detector": "mtcnn",
                "min_face_size": self.min_face_size,
                "thresholds": list(self.thresholds),
                "factor": self.factor,
                "weights": digest.hexdigest()[:16],
            }
        return dict(self._settings)

    # ------------------------------------------------------------------------------------------
    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales for an image: 12 / min_face_size, times factor^k, while the scaled
        shorter side is still >= 12 pixels (P-Net's window)."""
        scale = 12.0 / self.min_face_size
        shorter = min(height, width) * scale
        out = []
        while shorter >= 12:
            out.append(scale)
            scale *= self.factor
            shorter *= self.factor
        return out

    @torch.inference_mode()
    def detect(self, images: Sequence[Image.Image | np.ndarray]) -> list[list[Face]]:
        """The faces of each image (a list per image, highest score first)."""
        arrays = [as_rgb_array(im) for im in images]
        if not arrays:
            return []
        sizes = torch.tensor([a.shape[:2] for a in arrays], device=self.device)
        height, width = (int(v) for v in sizes.max(dim=0).values)
        batch = torch.zeros(len(arrays), 3, height, width, device=self.device)
        for k, a in enumerate(arrays):
            pixels = torch.tensor(a, device=self.device).permute(2, 0, 1)
            batch[k, :, : a.shape[0], : a.shape[1]] = pixels.float()
        boxes, image_of = self._propose(batch, sizes)
        boxes, image_of = self._refine(batch, sizes, boxes, image_of)
        boxes, points, scores, image_of = self._output(batch, sizes, boxes, image_of)
        out: list[list[Face]] = [[] for _ in arrays]
        boxes, points = boxes.cpu().double().numpy(), points.cpu().double().numpy()
        for b, p, s, k in zip(boxes, points, scores.tolist(), image_of.tolist(), strict=True):
            out[k].append(Face(b, p, float(s)))
        return out

    def detect_one(self, image: Image.Image | np.ndarray) -> list[Face]:
        """The faces of one image, highest score first."""
        return self.detect([image])[0]

    # ------------------------------------------------------------------------------------------
    def _propose(self, batch: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: P-Net over the pyramid; NMS of the windows per level (IoU 0.5), then over all
        levels (0.7); box regression; squares. Returns boxes (N, 4) and their image indices."""
        height, width = batch.shape[-2:]
        found_boxes, found_images = [], []
        for scale in self.scales(height, width):
            h, w = math.ceil(height * scale), math.ceil(width * scale)
            probability, offsets = self.pnet(_normalise(_resize(batch, (h, w))))
            k, i, j = torch.nonzero(probability > self.thresholds[0], as_tuple=True)
            if len(k) == 0:
                continue
            # cell (i, j) sees the 12x12 window at (2j, 2i) of the scaled image
            sx, sy = w / width, h / height
            x1, y1 = 2 * j / sx, 2 * i / sy
            window = torch.stack([x1, y1, x1 + 12 / sx, y1 + 12 / sy], dim=1)
            score = probability[k, i, j]
            keep = batched_nms(window, score, k, 0.5)
            found_boxes.append(
                torch.cat([window, score[:, None], offsets[k, :, i, j]], dim=1)[keep]
            )
            found_images.append(k[keep])
        if not found_boxes:
            return batch.new_zeros(0, 4), torch.zeros(0, dtype=torch.long, device=batch.device)
        found, image_of = torch.cat(found_boxes), torch.cat(found_images)
        keep = batched_nms(found[:, :4], found[:, 4], image_of, 0.7)
        found, image_of = found[keep], image_of[keep]
        boxes = _regress(found[:, :4], found[:, 5:])
        inside = self._centre_inside(boxes, sizes[image_of])
        return _square(boxes[inside]), image_of[inside]

    @staticmethod
    def _centre_inside(boxes: Tensor, sizes: Tensor) -> Tensor:
        """Boxes whose centre lies in their own image (not in the padding of a batch)."""
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        return (cx >= 0) & (cy >= 0) & (cx < sizes[:, 1]) & (cy < sizes[:, 0])

    def _crops(self, batch: Tensor, sizes: Tensor, boxes: Tensor, image_of: Tensor, side: int):
        """Square boxes, rounded to whole pixels, cut out of their images (black outside the
        image, as the original MTCNN pads) and resized to side x side. Returns the normalised
        crops (N, 3, side, side) and the integer boxes (N, 4)."""
        whole = torch.round(boxes).long()
        whole[:, 2:] = torch.maximum(whole[:, 2:], whole[:, :2] + 1)
        crops = batch.new_empty(len(whole), 3, side, side)
        for n, ((x1, y1, x2, y2), k) in enumerate(
            zip(whole.tolist(), image_of.tolist(), strict=True)
        ):
            h, w = sizes[k].tolist()
            cut = batch[k : k + 1, :, max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)]
            pad = (max(-x1, 0), max(x2 - w, 0), max(-y1, 0), max(y2 - h, 0))
            if cut.shape[-1] == 0 or cut.shape[-2] == 0:
                cut = batch.new_zeros(1, 3, y2 - y1, x2 - x1)
            elif any(pad):
                cut = F.pad(cut, pad)
            crops[n] = _resize(cut, (side, side))[0]
        return _normalise(crops), whole.to(boxes.dtype)

    def _run(self, net, crops: Tensor) -> tuple[Tensor, ...]:
        parts = [net(crops[s : s + self.max_batch]) for s in range(0, len(crops), self.max_batch)]
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))

    def _refine(self, batch, sizes, boxes, image_of) -> tuple[Tensor, Tensor]:
        """Stage 2: R-Net on 24x24 crops; threshold; NMS (IoU 0.7); regression; squares."""
        if len(boxes) == 0:
            return boxes, image_of
        crops, whole = self._crops(batch, sizes, boxes, image_of, 24)
        probability, offsets = self._run(self.rnet, crops)
        ok = probability > self.thresholds[1]
        whole, probability, offsets, image_of = (
            whole[ok],
            probability[ok],
            offsets[ok],
            image_of[ok],
        )
        keep = batched_nms(whole, probability, image_of, 0.7)
        return _square(_regress(whole[keep], offsets[keep])), image_of[keep]

    def _output(self, batch, sizes, boxes, image_of):
        """Stage 3: O-Net on 48x48 crops: scores, landmarks, regressed boxes; NMS by
        intersection over the smaller box (0.7) so that nested boxes collapse to one."""
        if len(boxes) == 0:
            return boxes, boxes.new_zeros(0, 5, 2), boxes.new_zeros(0), image_of
        crops, whole = self._crops(batch, sizes, boxes, image_of, 48)
        probability, offsets, marks = self._run(self.onet, crops)
        ok = probability > self.thresholds[2]
        whole, probability, offsets, marks = whole[ok], probability[ok], offsets[ok], marks[ok]
        image_of = image_of[ok]
        side = (whole[:, 2] - whole[:, 0])[:, None]
        points = torch.stack(
            [whole[:, :1] + side * marks[:, :5], whole[:, 1:2] + side * marks[:, 5:]], dim=2
        )
        final = _regress(whole, offsets)
        keep = batched_nms(final, probability, image_of, 0.7, mode="min")
        return final[keep], points[keep], probability[keep], image_of[keep]


def select_face(faces: Sequence[Face], image_size: tuple[int, int], how: str = "largest"):
    """One face of several: ``largest`` box, most ``central`` (box centre nearest the centre of
    an image of ``image_size`` = (height, width)), or best ``score``. None when there is none."""
    if how not in SELECTIONS:
        raise ValueError(f"face selection must be one of {', '.join(SELECTIONS)}, got {how!r}")
    if not faces:
        return None
    if how == "largest":
        return max(faces, key=lambda f: f.size)
    if how == "score":
        return max(faces, key=lambda f: f.score)
    centre = np.array([image_size[1], image_size[0]], dtype=np.float64) / 2
    return min(faces, key=lambda f: np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre))


class NoFaceError(ValueError):
    """The detector found no face in a photo."""


class FaceAligner:
    """Photos to aligned crops: detect (MTCNN), choose one face, warp its 5 landmarks onto the
    ArcFace template (:func:`marginface.data.detection.align.align_face`), the geometry every model
    trained on aligned crops expects.

    Args:
        detector: a :class:`FaceDetector`.
        image_size: side of the aligned crop (112 is the standard).
        select: which face of several (see :data:`SELECTIONS`).
        fallback: with no face found, return the photo unchanged (counted in :attr:`misses`,
            once per photo when it comes with a key) instead of raising :class:`NoFaceError`.
        cache: a :class:`marginface.data.detection.detect_cache.DetectionCache` of the detector's
            faces by photo content: a photo passed with its ``key`` (:func:`load_tensor` does
            so) is detected only when the cache does not hold it. None = detect every call.
    """

    def __init__(
        self,
        detector: FaceDetector,
        image_size: int | tuple[int, int] = 112,
        select: str = "largest",
        fallback: bool = False,
        cache=None,
    ) -> None:
        if select not in SELECTIONS:
            raise ValueError(
                f"face selection must be one of {', '.join(SELECTIONS)}, got {select!r}"
            )
        self.detector = detector
        self.image_size = image_size
        self.select = select
        self.fallback = fallback
        self.cache = cache
        self.misses = 0
        self.missed: set[str] = set()

    def find(self, image: Image.Image | np.ndarray, key: str | None = None) -> Face | None:
        """The chosen face of one photo, or None. ``key`` (the photo's content key) looks the
        faces up in :attr:`cache` first, and stores them there when they had to be found."""
        array = as_rgb_array(image)
        faces = None if key is None or self.cache is None else self.cache.get(key)
        if faces is None:
            faces = self.detector.detect_one(array)
            if key is not None and self.cache is not None:
                self.cache.put(key, faces)
        return select_face(faces, array.shape[:2], self.select)

    def align(self, image: Image.Image, face: Face) -> Image.Image:
        """The aligned crop of ``face`` in ``image``."""
        from marginface.data.detection.align import align_face

        return align_face(image, face.landmarks, self.image_size)

    def __call__(self, image: Image.Image, key: str | None = None) -> Image.Image:
        face = self.find(image, key)
        if face is None:
            if self.fallback:
                if key is None or key not in self.missed:
                    self.misses += 1
                if key is not None:
                    self.missed.add(key)
                return image
            raise NoFaceError("no face found")
        return self.align(image, face)


class CropsOrPhotos:
    """The use commands' default (``verify``, ``embed``, ``search``, ``calibrate`` without
    ``--detect`` or ``--no-detect``): an image of exactly ``image_size`` x ``image_size``
    pixels is taken as an aligned crop and passed on unchanged; any other image is a photo,
    detected and aligned by the :class:`FaceAligner` that ``make()`` returns (built at the
    first photo, so crops alone never load the detector). Whether a crop of the right size is
    aligned is the caller's call: it is not checked.

    :attr:`crops` and :attr:`photos` count the images of each kind; :attr:`misses` those
    photos without a face that a falling-back aligner returned whole.
    """

    def __init__(self, make: Callable[[], FaceAligner], image_size: int) -> None:
        self.make = make
        self.image_size = int(image_size)
        self.aligner: FaceAligner | None = None
        self.crops = 0
        self.photos = 0

    @property
    def misses(self) -> int:
        return 0 if self.aligner is None else self.aligner.misses

    def __call__(self, image: Image.Image) -> Image.Image:
        if image.size == (self.image_size, self.image_size):
            self.crops += 1
            return image
        if self.aligner is None:
            self.aligner = self.make()
        self.photos += 1
        return self.aligner(image)


#: the name that picks the built-in MTCNN detector (any other value is an SCRFD ``.onnx`` file)
MTCNN = "mtcnn"


def make_detector(
    detector: str | os.PathLike | None = None,
    min_face_size: float = 20.0,
    thresholds: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    threads: int | None = None,
):
    """The face detector a command asked for: MTCNN (``detector`` None or ``"mtcnn"``), or an
    SCRFD ONNX file given by its path (:class:`marginface.data.detection.scrfd.ScrfdDetector`, run
    by onnxruntime on the CPU; ``device`` applies to MTCNN only).

    ``thresholds``: MTCNN's three stage probabilities (default 0.6, 0.7, 0.7), or SCRFD's one
    score threshold (default 0.5). ``threads``: onnxruntime's intra-op threads for SCRFD.
    """
    if detector is None or str(detector) == MTCNN:
        return FaceDetector(
            min_face_size=min_face_size,
            thresholds=(0.6, 0.7, 0.7) if thresholds is None else thresholds,
            device=device,
        )
    from marginface.data.detection.scrfd import ScrfdDetector

    if thresholds is not None and len(thresholds) != 1:
        raise ValueError(
            f"an SCRFD detector takes one score threshold (e.g. 0.5), got {tuple(thresholds)}"
        )
    return ScrfdDetector(
        detector,
        score_threshold=0.5 if thresholds is None else float(thresholds[0]),
        min_face_size=min_face_size,
        threads=threads,
    )


def describe_detector(detector) -> dict:
    """What identifies a detector: MTCNN and its options, or an SCRFD file and its sha256."""
    if isinstance(detector, FaceDetector):
        return {
            "detector": MTCNN,
            "min_face_size": detector.min_face_size,
            "thresholds": list(detector.thresholds),
        }
    return detector.describe()
