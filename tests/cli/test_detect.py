"""``--detect``: verify, embed, search and eval on raw photos (detect, align, then embed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, detector):
    """LFW-style folder of raw photos: eileen_0001..3 (the astronaut, moved and scaled, one
    mirrored) and noise_0001 (no face)."""
    astronaut = astronaut.resize((256, 256), Image.BILINEAR)
    root = tmp_path_factory.mktemp("photos") / "photos"
    (root / "eileen").mkdir(parents=True)
    (root / "noise").mkdir()
    astronaut.save(root / "eileen" / "eileen_0001.jpg", quality=95)
    moved = Image.new("RGB", (320, 240), (200, 200, 200))
    moved.paste(astronaut.resize((200, 200)), (110, 30))
    moved.save(root / "eileen" / "eileen_0002.jpg", quality=95)
    astronaut.transpose(Image.FLIP_LEFT_RIGHT).rotate(12).save(root / "eileen" / "eileen_0003.png")
    noise = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "noise" / "noise_0001.png")
    return root


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_detect_equals_embedding_the_aligned_crops(trained_run, photos, tmp_path, capsys):
    # the model sees the crops `align --detect` writes (at its own 16 px), pixel for pixel
    crops = tmp_path / "crops"
    argv = ["align", str(photos), "--detect", "--output", str(crops), "--image-size", "16"]
    assert _run([*argv, "--quiet"], capsys)[0] == 0
    raw, aligned = tmp_path / "raw.npz", tmp_path / "aligned.npz"
    code, out, err = _run(
        ["embed", str(photos), "--detect", "--checkpoint", str(trained_run), "--output", str(raw),
         "--quiet"], capsys,
    )  # fmt: skip
    assert code == 0, err
    warning = f"marginface embed: warning: skipped image {photos / 'noise' / 'noise_0001.png'}"
    assert f"{warning} (no face found)" in err
    default = tmp_path / "default.npz"  # whole photos: detected without --detect too
    code, out, err = _run(
        ["embed", str(photos), "--checkpoint", str(trained_run), "--output", str(default),
         "--quiet"], capsys,
    )  # fmt: skip
    assert code == 0 and "noise_0001.png (no face found)" in err, err
    with np.load(raw) as r, np.load(default) as d:
        assert list(r["names"]) == list(d["names"])
        np.testing.assert_array_equal(r["embeddings"], d["embeddings"])
    code, out, err = _run(
        [
            "embed",
            str(crops),
            "--checkpoint",
            str(trained_run),
            "--output",
            str(aligned),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    with np.load(raw) as r, np.load(aligned) as a:
        assert [n.rsplit(".", 1)[0] for n in r["names"]] == [
            n.rsplit(".", 1)[0] for n in a["names"]
        ]
        np.testing.assert_allclose(r["embeddings"], a["embeddings"], atol=1e-6)
    # search with --detect finds the query's own aligned crop first
    query = photos / "eileen" / "eileen_0002.jpg"
    code, out, err = _run(
        ["search", str(query), "--detect", "--gallery", str(aligned), "--checkpoint",
         str(trained_run), "--top-k", "1"], capsys,
    )  # fmt: skip
    assert code == 0, err
    name, score = out.splitlines()[1].split()[1:]
    assert name == "eileen/eileen_0002.png" and float(score) == pytest.approx(1.0, abs=1e-5)


def test_verify_detect(trained_run, photos, capsys):
    a, b = photos / "eileen" / "eileen_0001.jpg", photos / "eileen" / "eileen_0002.jpg"
    base = ["verify", str(a), str(b), "--checkpoint", str(trained_run), "--threshold", "0.5"]
    code, out, err = _run([*base, "--detect"], capsys)
    assert code == 0, err
    with_detect = float(out.split()[1])
    code, out, err = _run(base, capsys)  # whole photos: detected by default
    assert code == 0, err
    assert float(out.split()[1]) == with_detect
    code, out, err = _run([*base, "--no-detect"], capsys)
    without = float(out.split()[1])
    # aligned, the two photos of one face give nearly the same crop; resized whole, they do not
    assert with_detect > 0.95 and with_detect > without
    code, out, err = _run(
        [*base[:2], str(photos / "noise" / "noise_0001.png"), *base[3:], "--detect"], capsys
    )
    assert code == 2 and "no face found in" in err and "noise_0001.png" in err


def test_eval_detect_on_a_pairs_list(trained_run, photos, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("eileen 1 2\neileen 1 3\neileen 2 3\neileen 1 noise 1\neileen 2 noise 1\n")
    out = tmp_path / "eval"
    code, stdout, err = _run(
        ["eval", "--checkpoint", str(trained_run), "--pairs", f"{pairs}::{photos}", "--detect",
         "--output", str(out), "--folds", "2", "--quiet"], capsys,
    )  # fmt: skip
    assert code == 0, err
    # the photo without a face is used whole, and said so (once: 2 pairs name it)
    assert "marginface eval: warning: the detector found no face in 1 photos" in err
    assert "faces: 4 photos detected, 0 look-ups answered by the detection cache in " in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["photos"]["num_pairs"] == 5
    # the next run on the same photos detects nothing (the cache folder: conftest's
    # MARGINFACE_DETECT_CACHE), and scores the same
    code, stdout, err = _run(
        ["eval", "--checkpoint", str(trained_run), "--pairs", f"{pairs}::{photos}", "--detect",
         "--output", str(tmp_path / "again"), "--folds", "2", "--quiet"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "faces: 0 photos detected, 4 look-ups answered" in stdout
    assert json.loads((tmp_path / "again" / "metrics.json").read_text()) == metrics


def test_default_detection_whole_photo_vs_crop(trained_run, photos, tmp_path, capsys):
    """By default a whole photo (the astronaut, 256 px) is detected and aligned, and a crop of
    the model's size (16 px) is taken as an aligned crop: the photo's score against its own
    aligned crop is that of the crop with itself; with --no-detect the photo is squashed."""
    crops = tmp_path / "crops"
    argv = ["align", str(photos / "eileen"), "--detect", "--output", str(crops)]
    assert _run([*argv, "--image-size", "16", "--quiet"], capsys)[0] == 0
    crop = crops / "eileen_0001.png"
    photo = photos / "eileen" / "eileen_0001.jpg"
    base = ["--checkpoint", str(trained_run), "--threshold", "0.5"]
    code, out, err = _run(["verify", str(photo), str(crop), *base], capsys)
    assert code == 0, err
    assert float(out.split()[1]) == pytest.approx(1.0, abs=1e-5)
    code, out, err = _run(["verify", str(photo), str(crop), *base, "--no-detect"], capsys)
    assert code == 0, err
    assert float(out.split()[1]) < 0.99
    # an explicit --detect detects in the crop too (16 px: no face found there)
    code, _, err = _run(["verify", str(photo), str(crop), *base, "--detect"], capsys)
    assert code == 2 and "no face found in" in err


def test_crops_alone_never_load_the_detector():
    from PIL import Image

    from marginface.data.detection.detect import CropsOrPhotos

    def refuse():
        raise AssertionError("the detector was built for a crop")

    auto = CropsOrPhotos(refuse, 16)
    crop = Image.new("RGB", (16, 16))
    assert auto(crop) is crop and (auto.crops, auto.photos, auto.misses) == (1, 0, 0)
    with pytest.raises(AssertionError, match="built for a crop"):
        auto(Image.new("RGB", (16, 17)))  # not square: a photo
