"""``marginface align --detect``: photos in identity folders to aligned crops and a CSV."""

import csv

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main
from marginface.data.detection.detect_folder import CSV_FIELDS


def rows_of(path):
    with open(path, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture
def photos(tmp_path, astronaut):
    root = tmp_path / "photos"
    (root / "eileen").mkdir(parents=True)
    (root / "nobody").mkdir()
    astronaut.save(root / "eileen" / "a.jpg", quality=95)
    astronaut.transpose(Image.FLIP_LEFT_RIGHT).resize((300, 300)).save(root / "eileen" / "b.png")
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "nobody" / "noise.png")
    (root / "nobody" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_align_detect_writes_crops_csv_and_resumes(detector, photos, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert main(["align", str(photos), "--detect", "--output", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "aligned 2 of 4 photos" in text
    assert "no face found: 1 photos: nobody/noise.png" in text
    assert "unreadable: 1 photos: nobody/broken.jpg" in text
    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert crops == ["eileen/a.png", "eileen/b.png"]
    assert Image.open(out / "eileen" / "a.png").size == (112, 112)
    rows = rows_of(out / "detections.csv")
    assert list(next(iter(rows.values())).keys()) == CSV_FIELDS
    assert {p: r["status"] for p, r in rows.items()} == {
        "eileen/a.jpg": "ok",
        "eileen/b.png": "ok",
        "nobody/broken.jpg": "unreadable",
        "nobody/noise.png": "no_face",
    }
    a = rows["eileen/a.jpg"]
    # the CSV's landmarks are the detector's, in the photo's pixels
    face = detector.detect_one(Image.open(photos / "eileen" / "a.jpg").convert("RGB"))[0]
    marks = np.array([[float(a[f"lx{k}"]), float(a[f"ly{k}"])] for k in range(1, 6)])
    np.testing.assert_allclose(marks, face.landmarks, atol=0.005)
    assert float(a["score"]) == pytest.approx(face.score, abs=5e-6)
    # a second run does nothing new; a new photo is the only one processed
    (out / "eileen" / "a.png").unlink()
    Image.open(photos / "eileen" / "a.jpg").save(photos / "eileen" / "c.jpg")
    assert main(["align", str(photos), "--detect", "--output", str(out), "--quiet"]) == 0
    assert "aligned 3 of 5 photos" in capsys.readouterr().out
    assert not (out / "eileen" / "a.png").exists()  # listed in the CSV: skipped
    assert (out / "eileen" / "c.png").is_file()
    assert len(rows_of(out / "detections.csv")) == 5


def test_align_detect_option_errors(photos, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["align", str(photos), "--detect", "--output", out, "--thresholds", "0.6"]) == 2
    assert "--thresholds must be 3 numbers" in capsys.readouterr().err
    assert main(["align", str(photos), "--detect", "--output", str(photos)]) == 2
    assert "must differ" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["align", str(photos), "--output", out])  # neither --landmarks nor --detect


@pytest.mark.slow
def test_align_detect_with_workers_matches_one_process(detector, photos, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["align", str(photos), "--detect", "--output", str(one), "--quiet"]) == 0
    args = ["align", str(photos), "--detect", "--output", str(two), "--quiet", "--workers", "2"]
    assert main(args) == 0
    assert rows_of(one / "detections.csv") == rows_of(two / "detections.csv")
    for path in one.rglob("*.png"):
        assert np.array_equal(
            np.asarray(Image.open(path)), np.asarray(Image.open(two / path.relative_to(one)))
        )
