"""``marginface embed / verify / search / export`` end to end on a tiny trained model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from marginface.cli import main
from marginface.inference.search import faiss_available


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_folder_and_search(trained_run, face_folder, tmp_path, capsys):
    out = tmp_path / "g" / "gallery.npz"
    (face_folder / "notes.txt").write_text("not an image")  # ignored: not an image extension
    code, stdout, err = _run(
        [
            "embed",
            str(face_folder),
            "--checkpoint",
            str(trained_run),
            "--output",
            str(out),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert "18 embeddings of dimension 16" in stdout
    with np.load(out) as data:
        emb, names = data["embeddings"], data["names"]
    assert emb.shape == (18, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert names[0] == "person00/person00_0001.png" and list(names) == sorted(names)
    # searching with one of the gallery images finds it first, with cosine ~1
    query = face_folder / "person02" / "person02_0002.png"
    code, stdout, err = _run(
        [
            "search",
            str(query),
            "--gallery",
            str(out),
            "--top-k",
            "3",
            "--checkpoint",
            str(trained_run),
        ],
        capsys,
    )
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == f"{query}:" and len(lines) == 4
    assert lines[1].split()[1] == "person02/person02_0002.png"
    assert float(lines[1].split()[2]) == pytest.approx(1.0, abs=1e-4)
    if faiss_available():  # an approximate index finds the same first hit on 18 rows
        search = ["search", str(query), "--gallery", str(out), "--checkpoint", str(trained_run)]
        code, stdout, err = _run([*search, "--index", "hnsw", "--top-k", "3"], capsys)
        assert code == 0, err
        lines = stdout.splitlines()
        assert lines[0] == "hnsw index of 18 gallery rows (approximate search)"
        assert lines[2].split()[1] == "person02/person02_0002.png" and len(lines) == 5


def test_embed_skips_unreadable_image(trained_run, face_folder, tmp_path, capsys):
    folder = tmp_path / "imgs"
    shutil.copytree(face_folder / "person00", folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "e.npz"
    code, stdout, err = _run(
        ["embed", str(folder), "--checkpoint", str(trained_run), "--output", str(out), "--quiet"],
        capsys,
    )
    assert code == 0, err
    assert "marginface embed: warning: skipped unreadable image" in err and "broken.jpg" in err
    with np.load(out) as data:
        assert list(data["names"]) == [f"person00_000{k}.png" for k in (1, 2, 3)]
        assert data["embeddings"].shape == (3, 16)


def test_embed_dataset_spec(trained_run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    code, _, err = _run(
        [
            "embed",
            "synthetic:3x2",
            "--checkpoint",
            str(trained_run),
            "--output",
            str(out),
            "--no-flip",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    with np.load(out) as data:
        assert data["embeddings"].shape == (6, 16)
        assert data["labels"].tolist() == [0, 0, 1, 1, 2, 2]
        assert len(data["names"]) == 6 and len(data["identity_names"]) == 3


def test_embed_bad_out(trained_run, face_folder, tmp_path, capsys):
    code, _, err = _run(
        [
            "embed",
            str(face_folder),
            "--checkpoint",
            str(trained_run),
            "--output",
            str(tmp_path / "x.txt"),
        ],
        capsys,
    )
    assert code == 2 and "--output must be a .npz file" in err


def test_verify(trained_run, face_folder, capsys):
    a = face_folder / "person00" / "person00_0001.png"
    b = face_folder / "person01" / "person01_0001.png"
    # no threshold anywhere: the score, no verdict, what to run, exit 1 (docs/cli.md)
    code, out, err = _run(["verify", str(a), str(b), "--checkpoint", str(trained_run)], capsys)
    assert code == 1 and out.split()[0] == "score" and out.split()[2] == "none"
    assert f"marginface calibrate --checkpoint {trained_run} --pairs SET" in err
    assert len(err.strip().splitlines()) == 1
    code, stdout, err = _run(
        ["verify", str(a), str(a), "--checkpoint", str(trained_run), "--threshold", "0.5"], capsys
    )
    assert code == 0, err
    score, verdict = stdout.split()[1:3]
    assert float(score) == pytest.approx(1.0, abs=1e-4) and verdict == "same"
    code, stdout, _ = _run(
        ["verify", str(a), str(b), "--checkpoint", str(trained_run), "--threshold", "1.01"],
        capsys,
    )
    assert code == 0 and stdout.split()[2] == "different"


def test_verify_uses_stored_threshold(trained_run, face_folder, tmp_path, capsys):
    run = tmp_path / "with_threshold"
    shutil.copytree(trained_run, run)
    info = json.loads((run / "model.json").read_text())
    info["threshold"] = 2.0  # above any cosine: always "different"
    (run / "model.json").write_text(json.dumps(info))
    a = face_folder / "person00" / "person00_0001.png"
    code, stdout, err = _run(["verify", str(a), str(a), "--checkpoint", str(run)], capsys)
    assert code == 0, err
    assert "different" in stdout
    assert "(threshold 2.0000: model.json's threshold, not calibrated: FAR unknown)" in stdout


def test_verify_missing_image(trained_run, tmp_path, capsys):
    code, _, err = _run(
        [
            "verify",
            str(tmp_path / "a.png"),
            str(tmp_path / "b.png"),
            "--checkpoint",
            str(trained_run),
            "--threshold",
            "0.3",
        ],
        capsys,
    )
    assert code == 2 and "a.png does not exist" in err


def test_search_dimension_mismatch(trained_run, face_folder, tmp_path, capsys):
    gallery = tmp_path / "g.npz"
    np.savez(gallery, embeddings=np.ones((4, 8), dtype=np.float32), names=np.array(list("abcd")))
    query = face_folder / "person00" / "person00_0001.png"
    code, _, err = _run(
        ["search", str(query), "--gallery", str(gallery), "--checkpoint", str(trained_run)],
        capsys,
    )
    assert code == 2 and "16-d embeddings but gallery" in err and "8-d" in err


def test_export(trained_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    import torch

    from marginface.backbones.checkpoint import load_model

    out = tmp_path / "model.onnx"
    code, stdout, err = _run(
        ["export", "--checkpoint", str(trained_run), "--output", str(out)], capsys
    )
    assert code == 0, err
    assert "max abs difference" in stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, _ = load_model(trained_run)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=1e-4)
