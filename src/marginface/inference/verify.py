"""Comparing two face images from Python the way ``marginface verify`` does: the default
detection of :class:`~marginface.data.detection.detect.CropsOrPhotos`, the flip test, the refusal
of an untrained model (:mod:`marginface.backbones.trained`) and the model's own threshold
(:func:`~marginface.evaluation.calibration.decision_threshold`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn


def face_aligner(
    image_size: int,
    detect: bool | None = None,
    *,
    device: str = "cpu",
    select: str = "largest",
    fallback: bool = False,
    detector: str | None = None,
    min_face_size: float = 20.0,
    thresholds: Sequence[float] | None = None,
    cache: bool = False,
    cache_folder=None,
):
    """What turns an image file's picture into the model's input, as the use commands' flags
    say: ``detect`` True (``--detect``): a :class:`~marginface.data.detection.detect.FaceAligner`
    that detects and aligns the face in every image; False (``--no-detect``): None, every image is
    taken as an aligned crop; None (the default): crops of ``image_size`` pass unchanged, any
    other image is detected and aligned (:class:`~marginface.data.detection.detect.CropsOrPhotos`).
    ``detector``: MTCNN (None or ``"mtcnn"``) or an SCRFD ONNX file
    (:func:`~marginface.data.detection.detect.make_detector`).
    ``cache``: the faces found are kept by photo content
    (:class:`~marginface.data.detection.detect_cache.DetectionCache`), in memory and, when given, in
    ``cache_folder``."""
    if detect is False:
        return None
    from marginface.data.detection.detect import CropsOrPhotos, FaceAligner, make_detector

    def aligner() -> FaceAligner:
        found = make_detector(detector, min_face_size, thresholds, device=device)
        faces = None
        if cache:
            from marginface.data.detection.detect_cache import DetectionCache

            faces = DetectionCache(found.settings(), cache_folder)
        return FaceAligner(found, image_size, select, fallback=fallback, cache=faces)

    return aligner() if detect else CropsOrPhotos(aligner, image_size)


def verify_images(
    model: nn.Module,
    info: Mapping[str, Any],
    a: str | os.PathLike,
    b: str | os.PathLike,
    *,
    threshold: float | None = None,
    aligner: Any = "default",
    flip: bool = True,
    device: str = "cpu",
    allow_untrained: bool = False,
    path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Cosine score of two image files and the verdict at the model's threshold.

    Args:
        model, info: from :func:`marginface.backbones.load_model` (``path``: where it was
            loaded from, named in the refusal of an untrained model).
        threshold: decides instead of the model's own (calibrated, else stored) threshold.
        aligner: ``"default"`` (:func:`face_aligner` with ``detect=None``), None (crops) or
            an aligner of one's own.
        allow_untrained: do not refuse a model that looks untrained (ValueError otherwise).

    Returns ``score``, ``same`` (None without any threshold: no verdict), ``threshold`` and
    ``origin`` (where the threshold came from).
    """
    import torch

    from marginface.backbones.trained import check_trained
    from marginface.evaluation.calibration import decision_threshold
    from marginface.evaluation.embed import embed_images
    from marginface.inference.images import load_image

    check_trained(model, info, path, allow=allow_untrained)
    chosen, origin = decision_threshold(info, threshold)
    size = int(info.get("image_size") or 112)
    if isinstance(aligner, str) and aligner == "default":
        aligner = face_aligner(size, device=device)
    images = torch.stack([load_image(p, size, aligner) for p in (a, b)])
    model.to(device)
    emb = embed_images(model, images.to(device), flip=flip)
    score = float((emb[0] * emb[1]).sum())
    same = None if chosen is None else score >= chosen
    return {"score": score, "same": same, "threshold": chosen, "origin": origin}
