"""Issue 22, IJB metadata: crop names stay inside ROOT/loose_crop, ids fit in int64."""

import pytest

from marginface.evaluation.ijb import read_ijb_meta

NUMBERS = " ".join(["30"] * 10) + " 0.9"


def layout(root, name="0.jpg", template="100", pair="100 100 1"):
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text(f"{name} {NUMBERS}\n")
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text(f"{name} {template} 0\n")
    (root / "meta" / "ijbc_template_pair_label.txt").write_text(pair + "\n")
    return root


def test_ijb_layout_reads(tmp_path):
    meta = read_ijb_meta(layout(tmp_path / "IJBC"))
    assert meta.names == ["0.jpg"] and meta.templates.tolist() == [100]


@pytest.mark.parametrize("name", ["../../victim.png", "/etc/passwd", "a/../../victim.png"])
def test_ijb_crop_named_outside_its_root_is_refused(tmp_path, name):
    (tmp_path / "victim.png").write_bytes(b"secret")
    with pytest.raises(ValueError, match="ijbc_name_5pts_score.txt row 1: .*(outside|absolute)"):
        read_ijb_meta(layout(tmp_path / "a" / "IJBC", name=name))


def test_ijb_crop_symlink_leading_out_is_refused(tmp_path):
    root = layout(tmp_path / "IJBC", name="link/x.png")
    (root / "loose_crop" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leads outside"):
        read_ijb_meta(root)


@pytest.mark.parametrize(
    "template, pair",
    [("100000000000000000000", "100 100 1"), ("100", "100 100000000000000000000 1"),
     ("9" * 5000, "100 100 1"), ("1e3", "100 100 1")],
)  # fmt: skip
def test_ijb_template_id_of_10_to_the_20_is_one_line(tmp_path, template, pair):
    with pytest.raises(ValueError, match="is not an integer id .*64-bit") as info:
        read_ijb_meta(layout(tmp_path / "IJBC", template=template, pair=pair))
    assert len(str(info.value)) < 500


def test_ijb_template_id_of_10_to_the_20_cli(trained_run, tmp_path, capsys):
    from marginface.cli import main

    root = layout(tmp_path / "IJBC", template="100000000000000000000")
    code = main(["eval", "--checkpoint", str(trained_run), "--ijb", str(root), "--output",
                 str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("marginface eval: error: ")
    assert "ijbc_face_tid_mid.txt row 1" in err[0] and not (tmp_path / "out").exists()


def test_ijb_non_finite_landmarks_are_one_line(tmp_path):
    root = layout(tmp_path / "IJBC")
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("0.jpg " + "nan " * 10 + "0.9\n")
    with pytest.raises(ValueError, match="row 1: landmarks and score must be finite"):
        read_ijb_meta(root)
