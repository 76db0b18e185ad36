import numpy as np
import pytest
import torch
from PIL import Image

from marginface.cli import main
from marginface.data import BadImageWarning, open_dataset
from marginface.data.transforms import to_pixels


def test_pack_cli_round_trip(make_folder, tmp_path, capsys):
    root, written = make_folder({"x": 2, "y": 1})
    bad = root / "y" / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out" / "faces.rec"
    with pytest.warns(BadImageWarning, match="broken.png"):
        assert main(["pack", str(root), str(out), "--quiet"]) == 0
    assert "3 images of 2 identities; 1 unreadable" in capsys.readouterr().out
    ds = open_dataset(out, image_size=(20, 24))
    assert ds.labels.tolist() == [0, 0, 1] and ds.identity_names == ["x", "y"]
    assert (to_pixels(ds[2][0]) == written["y"][0]).all()
    assert (tmp_path / "out" / "faces.idx").is_file()
    assert (tmp_path / "out" / "faces.names").read_text() == "x\ny\n"


def test_pack_cli_errors(tmp_path, make_folder, capsys):
    root, _ = make_folder({"x": 1})
    assert main(["pack", str(root), str(tmp_path / "out.pack")]) == 2
    assert "must end in .rec" in capsys.readouterr().err
    (root / "empty").mkdir()
    assert main(["pack", str(root), str(tmp_path / "out.rec")]) == 2
    assert "empty" in capsys.readouterr().err


def test_synth_preview_is_a_grid(tmp_path):
    out = tmp_path / "sheet.png"
    code = main(["synth", "--preview", str(out), "--data", "synthetic:5x4,seed=2",
                 "--identities", "3", "--images", "4", "--image-size", "16"])  # fmt: skip
    assert code == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (3 * 16 + 4 * 2, 4 * 16 + 5 * 2, 3)
    ds = open_dataset("synthetic:5x4,seed=2", image_size=16)
    # row 1, column 2 is image 2 of identity 1
    cell = sheet[2 + 1 * 18 : 2 + 1 * 18 + 16, 2 + 2 * 18 : 2 + 2 * 18 + 16]
    assert (cell == to_pixels(ds[1 * 4 + 2][0])).all()


def test_synth_output_folder_reads_back_and_aligns(tmp_path):
    folder = tmp_path / "synth"
    assert main(["synth", "--data", "synthetic:12x1,difficulty=0.5", "--output", str(folder),
                 "--image-size", "32", "--quiet"]) == 0  # fmt: skip
    written = open_dataset(folder, image_size=32)
    direct = open_dataset("synthetic:12x1,difficulty=0.5", image_size=32)
    assert written.identity_names == direct.identity_names  # 12 names sort in label order
    assert written.labels.tolist() == direct.labels.tolist()
    assert all(torch.equal(written[i][0], direct[i][0]) for i in range(12))
    landmarks = (folder / "landmarks.txt").read_text().splitlines()
    assert len(landmarks) == 12 and landmarks[0].startswith("synth0000000/0000000.png ")
    aligned = tmp_path / "aligned"
    assert main(["align", str(folder), "--landmarks", str(folder / "landmarks.txt"),
                 "--output", str(aligned), "--image-size", "64", "--quiet"]) == 0  # fmt: skip
    assert Image.open(aligned / "synth0000011" / "0000011.png").size == (64, 64)


def test_synth_needs_something_to_do(capsys):
    assert main(["synth"]) == 2
    assert "--preview" in capsys.readouterr().err
    assert main(["synth", "--preview", "x.png", "--data", "synthetic:nope"]) == 2
    assert "bad synthetic spec" in capsys.readouterr().err
