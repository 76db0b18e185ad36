"""Evaluation loads, detects and embeds each distinct image of a pair set once, and the faces the
detector found are kept by photo content for the next model and the next run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from marginface.data import open_pairs
from marginface.data.base import ImagesOnly
from marginface.data.detection.align import template
from marginface.data.detection.detect import Face, FaceAligner
from marginface.data.detection.detect_cache import DetectionCache, content_key, settings_digest
from marginface.data.formats.verification import EncodedImages, _TensorsOnly, distinct_images
from marginface.evaluation import EmbedOptions, embed_dataset, evaluate_pairs, pair_scores
from marginface.evaluation.config import EvalConfig
from marginface.evaluation.evaluate import run_evaluation

QUIET = EmbedOptions(batch_size=7, progress=False)


class Counting(nn.Module):
    """A model that counts the images it is given (a flip test passes each image twice)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.model(x)


class CountingDetector:
    """Stands in for MTCNN: one face whose landmarks are the template's, scaled to the photo."""

    def __init__(self) -> None:
        self.calls = 0

    def settings(self) -> dict:
        return {"detector": "counting"}

    def detect_one(self, array: np.ndarray) -> list[Face]:
        self.calls += 1
        if array.mean() < 10:  # a black photo: no face
            return []
        h, w = array.shape[:2]
        points = template(112) * np.array([w / 112, h / 112])
        return [Face(np.array([0.0, 0.0, w, h]), points, 0.99)]


def _lfw_folder(root: Path, people: int = 6, per_person: int = 3) -> Path:
    """An LFW-layout folder of small photos and a pairs.txt naming each photo several times."""
    rng = np.random.default_rng(0)
    for p in range(people):
        (root / f"P{p}").mkdir(parents=True)
        for i in range(1, per_person + 1):
            pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
            if p == 0 and i == 1:
                pixels[:] = 0  # no face in this one
            Image.fromarray(pixels).save(root / f"P{p}" / f"P{p}_{i:04d}.png")
    lines = []
    for p in range(people):
        for i in range(1, per_person + 1):
            for j in range(i + 1, per_person + 1):
                lines.append(f"P{p}\t{i}\t{j}")
    for p in range(people):
        for q in range(people):
            if p != q:
                lines.append(f"P{p}\t1\tP{q}\t2")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root / "pairs.txt"


def test_distinct_images_by_file_by_bytes_and_by_item(tmp_path):
    pairs_file = _lfw_folder(tmp_path / "lfw")
    pairs = open_pairs(str(pairs_file), image_size=16)
    first, inverse = distinct_images(pairs.images)
    assert len(pairs.images) == 2 * (6 * 3 + 6 * 5) and len(first) == 6 * 3
    sources = pairs.images.dataset.sources
    for i, k in enumerate(inverse):  # every position maps to a file of the same name
        assert Path(sources[first[k]]).resolve() == Path(sources[i]).resolve()
    # a .bin stores each pair's images: equal bytes are one image
    blobs = [b"a", b"b", b"a", b"c", b"b", b"a"]
    first, inverse = distinct_images(_TensorsOnly(EncodedImages(blobs)))
    assert first.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1, 0]
    first, inverse = distinct_images(ImagesOnly(None, [4, 2, 4, 4]))
    assert first.tolist() == [0, 1] and inverse.tolist() == [0, 1, 0, 0]


def test_each_distinct_image_embedded_once_with_the_same_scores(tmp_path):
    pairs = open_pairs(str(_lfw_folder(tmp_path / "lfw")), image_size=16)
    torch.manual_seed(0)
    model = Counting(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8)))
    metrics, scores = evaluate_pairs(model, pairs, QUIET)
    assert model.images == 2 * 18  # 18 distinct images, each with its mirror; 96 named
    every = pair_scores(embed_dataset(model.model, pairs.images, QUIET))
    # the same float32 rows, only gathered: equal to float32 rounding of a dot product
    np.testing.assert_allclose(scores, every, rtol=0, atol=1e-6)
    assert metrics["num_pairs"] == len(pairs)


def _aligner(cache_folder, detector=None):
    detector = detector or CountingDetector()
    cache = DetectionCache(detector.settings(), cache_folder)
    return FaceAligner(detector, 16, fallback=True, cache=cache)


def test_photos_detected_once_for_two_models_and_not_again_next_run(tmp_path, saved_model):
    pairs_file = _lfw_folder(tmp_path / "lfw")
    aligner = _aligner(tmp_path / "cache")
    config = EvalConfig([saved_model, saved_model], [str(pairs_file)])
    result = run_evaluation(config, QUIET, aligner=aligner)
    assert len(result.checkpoints) == 2
    assert aligner.detector.calls == 18  # 96 images named, 18 distinct, two models
    assert any("no face in 1 photos" in w for w in result.warnings)
    first = result.scores[result.checkpoints[0].name][result.pair_set_names[0]][0]
    # a second run on the same photos: every face comes from the folder
    again = _aligner(tmp_path / "cache")
    result2 = run_evaluation(EvalConfig([saved_model], [str(pairs_file)]), QUIET, aligner=again)
    assert again.detector.calls == 0 and again.cache.hits == 18
    second = result2.scores[result2.checkpoints[0].name][result2.pair_set_names[0]][0]
    np.testing.assert_array_equal(first, second)
    assert any("no face in 1 photos" in w for w in result2.warnings)
    # other detector settings never read these entries
    other = CountingDetector()
    other.settings = lambda: {"detector": "counting", "min_face_size": 40}
    run_evaluation(EvalConfig([saved_model], [str(pairs_file)]), QUIET, aligner=_aligner(
        tmp_path / "cache", other))  # fmt: skip
    assert other.calls == 18


def _entry(folder: Path, data: bytes) -> Path:
    key = content_key(data)
    return folder / settings_digest({"detector": "counting"}) / key[:2] / f"{key}.json"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"faces": [{"box": [0, 0, 1], "landmarks": [[0, 0]], "score": 0.5}]}',
        b'{"faces": [{"box": [0, 0, 1, 1], "landmarks": [[NaN, 0]] , "score": 0.5}]}',
        b'{"faces": [{"box": [0, 0, 1, 1], "landmarks": ' + b"[[0, 0]]" + b', "score": 2}]}',
        b'{"faces": "__import__(\'os\')"}',
        b"[" * 100_000 + b"]" * 100_000,
        b" " * (300 * 1024),
    ],
    ids=["empty", "truncated", "shape", "nan", "score", "string", "deep", "large"],
)
def test_a_bad_cache_entry_is_ignored_and_rewritten(tmp_path, content):
    photo = tmp_path / "a.png"
    Image.fromarray(np.full((40, 36, 3), 128, dtype=np.uint8)).save(photo)
    entry = _entry(tmp_path / "cache", photo.read_bytes())
    entry.parent.mkdir(parents=True)
    entry.write_bytes(content)
    aligner = _aligner(tmp_path / "cache")
    from marginface.data.transforms import load_tensor

    load_tensor(photo, 16, aligner=aligner)
    assert aligner.detector.calls == 1
    faces = json.loads(entry.read_text())["faces"]
    assert len(faces) == 1 and faces[0]["score"] == pytest.approx(0.99)


def test_a_fifo_in_the_cache_is_not_opened_and_an_unwritable_cache_is_reported(tmp_path):
    from marginface.data.transforms import load_tensor

    photo = tmp_path / "a.png"
    Image.fromarray(np.full((40, 36, 3), 128, dtype=np.uint8)).save(photo)
    entry = _entry(tmp_path / "cache", photo.read_bytes())
    entry.parent.mkdir(parents=True)
    os.mkfifo(entry)  # opening it would block the run
    aligner = _aligner(tmp_path / "cache")
    load_tensor(photo, 16, aligner=aligner)
    assert aligner.detector.calls == 1 and entry.is_file()  # replaced by a real entry
    # a cache "folder" that is a file: the run goes on in memory, the error is kept
    (tmp_path / "not-a-folder").write_text("x")
    aligner = _aligner(tmp_path / "not-a-folder")
    load_tensor(photo, 16, aligner=aligner)
    load_tensor(photo, 16, aligner=aligner)
    assert aligner.detector.calls == 1 and "NotADirectoryError" in aligner.cache.write_error
