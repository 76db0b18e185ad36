"""``marginface eval`` end to end on a tiny trained model, and its bad-input errors."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import numpy as np

from marginface.cli import main

PAIRS = "synthetic:6x3,first=300"


def test_eval_one_checkpoint_with_identification(trained_run, face_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--pairs",
            PAIRS,
            "--output",
            str(out),
            "--identification",
            str(face_folder),
            "--batch-size",
            "16",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"synthetic", "identification"}
    m = metrics["synthetic"]
    assert 0.0 <= m["accuracy"] <= 1.0 and len(m["fold_accuracies"]) == 10
    assert m["num_pairs"] == m["num_genuine"] + m["num_impostor"] > 0
    ident = metrics["identification"]
    assert ident["num_gallery_identities"] == 6 and ident["num_probes"] == 12
    assert ident["rank1"] <= ident["rank5"] and ident["cmc"][-1] == 1.0
    md = (out / "report.md").read_text()
    assert "| tiny | synthetic |" in md and "rank-1 %" in md
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "cmc.png",
        "hist_tiny_synthetic.png",
        "roc_synthetic.png",
    ]
    html = (out / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3
    stdout = capsys.readouterr().out
    assert "tiny / synthetic: accuracy" in stdout and "rank-1" in stdout


def test_eval_no_flip_changes_scores(trained_run, tmp_path, capsys):
    outs = []
    for flag, name in (([], "flip"), (["--no-flip"], "noflip")):
        code = main(
            [
                "eval",
                "--checkpoint",
                str(trained_run),
                "--pairs",
                "synthetic:4x2",
                "--output",
                str(tmp_path / name),
                "--quiet",
                *flag,
            ]
        )
        assert code == 0
        outs.append(json.loads((tmp_path / name / "metrics.json").read_text())["synthetic"])
    assert outs[0]["num_pairs"] == 8  # 4 genuine + 4 impostor: 8 folds of one pair
    assert outs[0]["best_threshold"] != outs[1]["best_threshold"]


def test_eval_several_checkpoints_and_pair_sets(trained_run, tmp_path, capsys):
    other = tmp_path / "copy"
    shutil.copytree(trained_run, other)
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--checkpoint",
            str(other / "model.pt"),
            "--pairs",
            PAIRS,
            "--pairs",
            "synthetic:6x2,first=900",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"tiny", "copy"}
    # two pair sets named "synthetic": their specs name them instead
    assert set(metrics["tiny"]) == {PAIRS, "synthetic:6x2,first=900"}
    # the same weights give the same numbers
    assert metrics["tiny"][PAIRS]["auc"] == metrics["copy"][PAIRS]["auc"]
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {
        "roc_synthetic_6x3_first_300.png",
        "roc_synthetic_6x2_first_900.png",
        "roc_all.png",
        "accuracy.png",
    } <= figures
    assert len([f for f in figures if f.startswith("hist_")]) == 4


def test_eval_identification_with_given_lists(trained_run, face_folder, tmp_path, capsys):
    names = sorted(p.name for p in face_folder.iterdir())
    gallery = tmp_path / "gallery.txt"
    probes = tmp_path / "probes.txt"
    gallery.write_text("".join(f"{n}/{n}_0001.png\n{n}/{n}_0002.png\n" for n in names))
    probes.write_text("".join(f"{n}/{n}_0003.png\n" for n in names))
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--identification",
            str(face_folder),
            "--gallery-list",
            str(gallery),
            "--probe-list",
            str(probes),
            "--output",
            str(out),
            "--quiet",
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    ident = json.loads((out / "metrics.json").read_text())["identification"]
    assert ident["num_gallery"] == 12 and ident["num_probes"] == 6
    probes.write_text("nobody/9.png\n")
    code = main(
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--identification",
            str(face_folder),
            "--gallery-list",
            str(gallery),
            "--probe-list",
            str(probes),
            "--output",
            str(tmp_path / "bad"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "probes.txt line 1: nobody/9.png is not an image of" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _expect_error(argv, capsys, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    for needle in needles:
        assert needle in err, err
    return err


def test_pairs_file_naming_missing_image(trained_run, face_folder, tmp_path, capsys):
    names = sorted(p.name for p in face_folder.iterdir())
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"1 2\n{names[0]} 1 2\n{names[0]} 1 {names[1]} 7\n")
    out = tmp_path / "eval"
    _expect_error(
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--pairs",
            f"{pairs}::{face_folder}",
            "--output",
            str(out),
            "--quiet",
        ],
        capsys,
        "pairs.txt line 3",
        f"{names[1]}_0007",
    )
    assert not out.exists()


def test_bin_with_odd_number_of_images(trained_run, tmp_path, capsys):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    bad = tmp_path / "odd.bin"
    bad.write_bytes(pickle.dumps(([buf.getvalue()] * 3, [True, False])))
    out = tmp_path / "eval"
    _expect_error(
        ["eval", "--checkpoint", str(trained_run), "--pairs", str(bad), "--output", str(out)],
        capsys,
        "odd.bin",
        "3 images for 2",
    )
    assert not out.exists()


def test_checkpoint_of_another_architecture(trained_run, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    shutil.copytree(trained_run, wrong)
    info = json.loads((wrong / "model.json").read_text())
    info["backbone"] = "mobilefacenet"
    (wrong / "model.json").write_text(json.dumps(info))
    out = tmp_path / "eval"
    _expect_error(
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--checkpoint",
            str(wrong),
            "--pairs",
            PAIRS,
            "--output",
            str(out),
        ],
        capsys,
        "model.pt",
        "does not fit the architecture",
        "missing keys",
    )
    assert not out.exists()


def test_missing_checkpoint(tmp_path, capsys):
    _expect_error(
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "nope"),
            "--pairs",
            PAIRS,
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
        "nope",
    )
    assert not (tmp_path / "o").exists()
    assert np.array([1]).size == 1
