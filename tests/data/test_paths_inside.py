"""Paths read from data files stay inside their root, for reading and for writing."""

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main
from marginface.data.detection.align import align_folder
from marginface.data.formats.verification import read_pairs_txt
from marginface.files import resolve_inside

MARKS = "38 52 74 52 56 72 42 92 71 92"


def photo(path, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((112, 112, 3), value, dtype=np.uint8)).save(path)


@pytest.mark.parametrize(
    "relative, ok",
    [("a/b.png", True), ("a/../b.png", True), ("../x", False), ("a/../../x", False),
     ("/etc/passwd", False), ("", False)],
)  # fmt: skip
def test_resolve_inside(tmp_path, relative, ok):
    if ok:
        assert tmp_path in resolve_inside(tmp_path, relative, "here").parents
    else:
        with pytest.raises(ValueError, match="here: "):
            resolve_inside(tmp_path, relative, "here")


def test_symlink_leading_out_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "out").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leads outside"):
        resolve_inside(tmp_path / "root", "out/x.png", "list")


def test_align_never_writes_outside_output(tmp_path, capsys):
    """The issue's reproduction: '../../victim.png' wrote outside --output, and '../in/x.png'
    overwrote the source photo."""
    src = tmp_path / "in"
    photo(src / "x.png", 90)
    before = (src / "x.png").read_bytes()
    for line in (f"../../victim.png {MARKS}", f"../in/x.png {MARKS}", f"/tmp/abs.png {MARKS}"):
        (tmp_path / "marks.txt").write_text(f"x.png {MARKS}\n{line}\n")
        code = main(["align", str(src), "--landmarks", str(tmp_path / "marks.txt"),
                     "--output", str(tmp_path / "out" / "o"), "--quiet"])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("marginface align: error: ")
        assert "marks.txt" in err[0] and line.split()[0] in err[0]
    assert not (tmp_path / "victim.png").exists() and not (tmp_path / "out").exists()
    assert (src / "x.png").read_bytes() == before


def test_align_output_onto_its_source_is_refused(tmp_path):
    photo(tmp_path / "in" / "x.png")
    (tmp_path / "marks.txt").write_text(f"x.png {MARKS}\n")
    with pytest.raises(ValueError, match="overwrite the source"):
        align_folder(tmp_path / "in", tmp_path / "marks.txt", tmp_path / "in", progress=False)


def test_pairs_txt_names_stay_in_the_folder(tmp_path):
    photo(tmp_path / "secret" / "secret_0001.png")
    lfw = tmp_path / "lfw"
    photo(lfw / "a" / "a_0001.png")
    photo(lfw / "a" / "a_0002.png")
    (lfw / "pairs.txt").write_text("a 1 2\n../secret 1 1\n")
    with pytest.raises(ValueError, match=r"pairs.txt line 2: '\.\./secret/"):
        read_pairs_txt(lfw / "pairs.txt", lfw)
    (lfw / "pairs.txt").write_text("a 1 2\n")
    paths, issame = read_pairs_txt(lfw / "pairs.txt", lfw)
    assert [p.name for p in paths] == ["a_0001.png", "a_0002.png"] and issame.tolist() == [True]


def test_non_utf8_text_files_are_named(tmp_path):
    (tmp_path / "pairs.txt").write_bytes(b"a 1 2\n\xff\xfe 1 1\n")
    with pytest.raises(ValueError, match=r"pairs file .*pairs.txt is not UTF-8 text: line 2"):
        read_pairs_txt(tmp_path / "pairs.txt", tmp_path)
