"""Issue 22, align: FIFOs are never read, file names of any bytes, crops that cannot collide,
non-finite sizes, a damaged detections.csv, bad detector weights, symlinked folders."""

import csv
import os
import threading

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main
from marginface.data.detection.detect_folder import CSV_FIELDS, list_photos
from marginface.files import NotRegularFile, open_regular, read_text

MARKS = "38 52 74 52 56 72 42 92 71 92"
NOT_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8


def one_error(capsys, argv, code=2):
    got = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert err[0].startswith(f"marginface {argv[0]}: error: ") and len(err[0]) < 1000
    return err[0]


def finishes(function, seconds=20.0):
    """Run ``function`` in a thread; fail (rather than hang the suite) if it blocks."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked on a FIFO"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "in" / "pipe.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_open_regular_refuses_a_fifo_without_blocking(fifo):
    for read in (open_regular, read_text):
        with pytest.raises(NotRegularFile, match="FIFO"):
            finishes(lambda read=read: read(fifo))
    with pytest.raises(NotRegularFile, match="folder"):
        open_regular(fifo.parent)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_regular(fifo.parent / "none.png")


def test_align_landmarks_listing_a_fifo_skips_it(fifo, tmp_path, capsys):
    Image.fromarray(np.full((112, 112, 3), 90, np.uint8)).save(fifo.parent / "x.png")
    (tmp_path / "marks.txt").write_text(f"pipe.png {MARKS}\nx.png {MARKS}\n")
    argv = ["align", fifo.parent, "--landmarks", tmp_path / "marks.txt", "--output",
            tmp_path / "out", "--quiet"]  # fmt: skip
    with pytest.warns(UserWarning, match="pipe.png is a FIFO.*only regular files are read"):
        code = finishes(lambda: main([str(a) for a in argv]))
    out = capsys.readouterr().out
    assert code == 0 and "aligned 1 images" in out and "1 failed: pipe.png" in out
    assert (tmp_path / "out" / "x.png").is_file() and not (tmp_path / "out" / "pipe.png").exists()


def test_align_detect_lists_no_fifo(fifo):
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(fifo.parent / "x.png")
    assert finishes(lambda: list_photos(fifo.parent)) == ["x.png"]


@pytest.fixture
def photos(tmp_path, astronaut):
    root = tmp_path / "photos"
    (root / "eileen").mkdir(parents=True)
    astronaut.save(root / "eileen" / "a.jpg", quality=95)
    return root


def test_align_detect_non_utf8_file_name(detector, photos, tmp_path, capsys, astronaut):
    """The crop and its CSV row are written, the summary prints, a rerun goes on."""
    astronaut.resize((300, 300)).save(photos / "eileen" / NOT_UTF8, format="JPEG")
    out = tmp_path / "aligned"
    assert main(["align", str(photos), "--detect", "--output", str(out), "--quiet"]) == 0
    assert "aligned 2 of 2 photos" in capsys.readouterr().out
    crop = out / "eileen" / os.fsdecode(b"caf\xe9.png")
    assert crop.is_file() and Image.open(crop).size == (112, 112)
    with open(out / "detections.csv", newline="", encoding="utf-8",
              errors="surrogateescape") as f:  # fmt: skip
        rows = {r["path"]: r for r in csv.DictReader(f)}
    assert rows[f"eileen/{NOT_UTF8}"]["status"] == "ok"
    assert rows[f"eileen/{NOT_UTF8}"]["output"] == "eileen/" + os.fsdecode(b"caf\xe9.png")
    astronaut.save(photos / "eileen" / "c.png")
    assert main(["align", str(photos), "--detect", "--output", str(out), "--quiet"]) == 0
    assert "aligned 3 of 3 photos" in capsys.readouterr().out  # the rerun went past the name


def test_align_detect_unreadable_non_utf8_name_prints(detector, photos, tmp_path, capsys):
    (photos / "eileen" / NOT_UTF8).write_bytes(b"not a jpeg")
    out = tmp_path / "aligned"
    assert main(["align", str(photos), "--detect", "--output", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "unreadable: 1 photos: eileen/caf\\udce9.jpg" in text
    text.encode("utf-8")  # printable on any terminal


def test_align_detect_a_jpg_and_a_png_cannot_collide(detector, photos, tmp_path, capsys,
                                                    astronaut):  # fmt: skip
    astronaut.save(photos / "eileen" / "a.png")
    out = tmp_path / "aligned"
    line = one_error(capsys, ["align", photos, "--detect", "--output", out, "--quiet"])
    assert "eileen/a.jpg and eileen/a.png would both be written to eileen/a.png" in line
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "5"])
def test_align_detect_min_face_size_nan_or_inf(photos, tmp_path, capsys, value):
    line = one_error(capsys, ["align", photos, "--detect", "--output", tmp_path / "o",
                              f"--min-face-size={value}"])  # fmt: skip
    assert "--min-face-size must be a finite number >= 12" in line
    assert not (tmp_path / "o").exists()


def test_align_detect_thresholds_nan(photos, tmp_path, capsys):
    line = one_error(capsys, ["align", photos, "--detect", "--output", tmp_path / "o",
                              "--thresholds", "nan,0.7,0.7"])  # fmt: skip
    assert "--thresholds must be 3 probabilities" in line


def test_align_detect_damaged_detections_csv(detector, photos, tmp_path, capsys):
    out = tmp_path / "aligned"
    out.mkdir()
    header = ",".join(CSV_FIELDS)
    (out / "detections.csv").write_text(f'{header}\n"{"x" * 200_000}",,ok\n')
    line = one_error(capsys, ["align", photos, "--detect", "--output", out, "--quiet"])
    assert "detections.csv line" in line and "damaged detections CSV" in line


def test_align_detect_detections_csv_of_other_columns(detector, photos, tmp_path, capsys):
    out = tmp_path / "aligned"
    out.mkdir()
    (out / "detections.csv").write_text("a,b\n1,2\n")
    line = one_error(capsys, ["align", photos, "--detect", "--output", out, "--quiet"])
    assert "is not a detections CSV of this version" in line


@pytest.mark.parametrize("content", [b"not a torch file", "a dict"])
def test_align_detect_bad_weights_under_the_environment_variable(
    photos, tmp_path, capsys, monkeypatch, content
):
    import torch

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("pnet", "rnet", "onet"):
        if isinstance(content, bytes):
            (weights / f"{name}.pt").write_bytes(content)
        else:
            torch.save({"conv1.weight": torch.zeros(3)}, weights / f"{name}.pt")
    monkeypatch.setenv("MARGINFACE_MTCNN_WEIGHTS", str(weights))
    line = one_error(capsys, ["align", photos, "--detect", "--output", tmp_path / "o"])
    assert "MARGINFACE_MTCNN_WEIGHTS=" in line and "pnet.pt" in line
    assert "are not the PNET weights" in line


def test_align_detect_follows_symlinked_identity_folders_inside(tmp_path):
    root = tmp_path / "photos"
    (root / "store" / "ann").mkdir(parents=True)
    (root / "store" / "ann" / "1.png").write_bytes(b"x")
    (root / "ann").symlink_to(root / "store" / "ann")  # inside the root: followed
    (root / "loop").symlink_to(root)  # above itself: a loop, skipped
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "2.png").write_bytes(b"x")
    (root / "out").symlink_to(tmp_path / "elsewhere")  # outside the root: skipped
    with pytest.warns(UserWarning) as caught:
        photos = list_photos(root)
    assert photos == ["ann/1.png", "store/ann/1.png"]
    messages = sorted(str(w.message) for w in caught)
    assert messages[0].startswith("skipped 1 linked folder(s) under") and "outside" in messages[0]
    assert "loop" in messages[1] and "above" in messages[1]


def test_align_detect_only_linked_folders_outside_says_why(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "2.png").write_bytes(b"x")
    (root / "bob").symlink_to(tmp_path / "elsewhere")
    with (
        pytest.warns(UserWarning, match="skipped 1 linked folder"),
        pytest.raises(ValueError, match="no image files"),
    ):
        list_photos(root)


def test_align_detect_weights_folder_from_the_variable_missing(photos, tmp_path, capsys,
                                                               monkeypatch):  # fmt: skip
    monkeypatch.setenv("MARGINFACE_MTCNN_WEIGHTS", str(tmp_path / "nowhere"))
    line = one_error(capsys, ["align", photos, "--detect", "--output", tmp_path / "o"])
    assert "nowhere (set by MARGINFACE_MTCNN_WEIGHTS)" in line and "pnet.pt" in line
