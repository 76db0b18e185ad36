"""The CLI's error boundary: every failure is one line naming the file, key or flag, with the
documented exit code; --debug / MARGINFACE_DEBUG=1 add the traceback; outputs are checked
before the work starts."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import marginface.cli.eval as eval_cli
from marginface.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def one_line(capsys, *argv, code=2):
    got, err, _ = run(capsys, *argv)
    assert got == code, err
    assert len(err) == 1, err
    assert err[0].startswith(f"marginface {argv[0]}: error: ")
    return err[0]


def test_unexpected_error_is_code_3_with_a_hint(capsys, monkeypatch, tmp_path):
    def boom(args):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(eval_cli, "run", boom)
    argv = ["eval", "--checkpoint", "x", "--output", tmp_path / "o"]
    line = one_line(capsys, *argv, code=3)
    assert "RuntimeError: something inside broke" in line and "--debug" in line
    code, err, _ = run(capsys, *argv, "--debug")
    assert code == 3 and err[0] == "Traceback (most recent call last):"
    assert err[-1].startswith("marginface eval: error: RuntimeError")
    monkeypatch.setenv("MARGINFACE_DEBUG", "1")
    code, err, _ = run(capsys, *argv)
    assert code == 3 and "Traceback (most recent call last):" in err


@pytest.fixture
def blocker(tmp_path):
    """A file where a command's output folder would have to be."""
    path = tmp_path / "a_file"
    path.write_text("in the way")
    return path


@pytest.mark.parametrize(
    "command, flag",
    [
        ("eval", "--output"),
        ("export", "--output"),
        ("embed", "--output"),
        ("synth", "--output"),
        ("synth", "--preview"),
        ("pack", "pack output"),
        ("align", "--output"),
    ],
)
def test_blocked_outputs_are_refused_before_the_work(
    capsys, monkeypatch, tmp_path, blocker, saved_model, command, flag
):
    from marginface.backbones import checkpoint

    loads = []
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: loads.append(a))
    faces = tmp_path / "faces" / "a"
    faces.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(faces / "1.png")
    (tmp_path / "marks.txt").write_text("a/1.png 1 2 3 4 5 6 7 8 9 9\n")
    target = blocker / "sub"
    argv = {
        "eval": ["--checkpoint", saved_model, "--pairs", "synthetic:4x2", "--output", target],
        "export": ["--checkpoint", saved_model, "--output", target / "m.onnx"],
        "embed": [tmp_path / "faces", "--checkpoint", saved_model, "--output", target / "e.npz"],
        "synth": ["--output", target] if flag == "--output" else ["--preview", target / "p.png"],
        "pack": [tmp_path / "faces", target / "p.rec"],
        "align": [tmp_path / "faces", "--landmarks", tmp_path / "marks.txt", "--output", target],
    }[command]
    line = one_line(capsys, command, *argv)
    assert f"{flag}: " in line and "a_file is a file" in line
    assert not loads  # refused before any model was loaded


def test_export_opset_out_of_range(capsys, saved_model, tmp_path):
    line = one_line(capsys, "export", "--checkpoint", saved_model, "--output", tmp_path / "m.onnx",
                    "--opset", "3")  # fmt: skip
    assert "--opset must be in 9.." in line and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "model.json: not valid JSON"),
        ('["a list"]', "expected a JSON object of model info"),
        (
            '{"backbone": "small_cnn", "backbone_kwargs": {"embedding_size": 1e12}}',
            "embedding_size must be in 1..65536, got 1000000000000.0",
        ),
        (
            '{"backbone": "small_cnn", "backbone_kwargs": {"embedding_size": 8, "wings": 2}}',
            "unexpected keyword argument 'wings'",
        ),
    ],
)
def test_bad_model_json(capsys, saved_model, tmp_path, text, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.pt").write_bytes((saved_model / "model.pt").read_bytes())
    (run_dir / "model.json").write_text(text)
    for name in ("x.png", "y.png"):  # images that exist: the model is checked next
        (tmp_path / name).write_bytes(b"")
    line = one_line(
        capsys, "verify", tmp_path / "x.png", tmp_path / "y.png", "--checkpoint", run_dir
    )
    assert message in line and "model.json" in line


@pytest.mark.parametrize("command", ["eval", "embed", "verify", "search"])
def test_missing_device_is_named(capsys, saved_model, tmp_path, command):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without cuda:99")
    argv = {
        "eval": ["--pairs", "synthetic:4x2", "--output", tmp_path / "o"],
        "embed": ["synthetic:2x2", "--output", tmp_path / "e.npz"],
        "verify": [tmp_path / "a.png", tmp_path / "b.png"],
        "search": [tmp_path / "a.png", "--gallery", tmp_path / "g.npz"],
    }[command]
    for name in ("a.png", "b.png"):  # inputs that exist (checked first): the device is next
        (tmp_path / name).write_bytes(b"")
    if command == "search":
        np.savez(tmp_path / "g.npz", embeddings=np.ones((1, 8)), names=np.array(["a"]))
    line = one_line(capsys, command, *argv, "--checkpoint", saved_model, "--device", "cuda:99")
    assert "--device 'cuda:99'" in line


def test_eval_flags_checked(capsys, saved_model, tmp_path):
    base = ["eval", "--checkpoint", saved_model, "--pairs", "synthetic:4x2"]
    line = one_line(capsys, *base, "--folds", "0", "--output", tmp_path / "o")
    assert "--folds must be >= 2" in line
    line = one_line(capsys, "verify", "a.png", "b.png", "--checkpoint", saved_model,
                    "--threshold", "nan")  # fmt: skip
    assert "--threshold must be a finite number" in line


def test_tiny_pair_set_warns(capsys, saved_model, tmp_path):
    code, err, _ = run(capsys, "eval", "--checkpoint", saved_model, "--pairs", "synthetic:2x2",
                       "--output", tmp_path / "o", "--quiet")  # fmt: skip
    assert code == 0
    assert len(err) == 1 and err[0].startswith(
        "marginface eval: warning: pair set synthetic: 4 pairs for 10 folds (fewer than 2 a fold)"
    )
    assert "not meaningful" in json.dumps(str((tmp_path / "o" / "report.md").read_text()))


def test_eval_with_bad_bins_and_pairs(capsys, saved_model, tmp_path):
    base = ["eval", "--checkpoint", saved_model, "--output", tmp_path / "o"]
    (tmp_path / "none.bin").write_bytes(pickle.dumps(([None, b"x"], [True])))
    line = one_line(capsys, *base, "--pairs", tmp_path / "none.bin")
    assert "image 0 is None, not encoded" in line
    (tmp_path / "pairs.txt").write_bytes(b"10 300\n\xe9t\xe9 1 2\n")
    line = one_line(capsys, *base, "--pairs", tmp_path / "pairs.txt")
    assert "pairs.txt is not UTF-8 text: line 2" in line
    assert not (tmp_path / "o").exists()


def test_huge_synthetic_spec_is_refused(capsys, tmp_path):
    line = one_line(capsys, "synth", "--data", "synthetic:1000000000x20", "--output", tmp_path)
    assert "synthetic:1000000000x20 is too large" in line


def test_identity_folder_link_to_the_root(capsys, tmp_path):
    root = tmp_path / "faces"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "a" / "1.png")
    (root / "everyone").symlink_to(root)
    line = one_line(capsys, "pack", root, tmp_path / "p.rec")
    assert "everyone links to" in line and "the dataset folder itself" in line


def test_identity_folder_with_a_line_break(capsys, tmp_path):
    root = tmp_path / "faces"
    for name in ("a", "b\nc"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / name / "1.png")
    line = one_line(capsys, "pack", root, tmp_path / "p.rec")
    assert "identity name 'b\\nc'" in line and "line break" in line
    assert not (tmp_path / "p.rec").exists()


def test_warnings_are_one_line_in_a_real_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import marginface

    root = tmp_path / "faces" / "a"
    root.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "1.png")
    (root / "2.png").write_bytes(b"not a png")
    env = {**os.environ, "PYTHONPATH": str(Path(marginface.__file__).parents[1])}
    argv = [sys.executable, "-m", "marginface", "pack", tmp_path / "faces", tmp_path / "p.rec"]
    done = subprocess.run(argv + ["--quiet"], capture_output=True, text=True, env=env)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 0 and len(err) == 1, err
    assert err[0].startswith("marginface pack: warning: unreadable image") and "2.png" in err[0]


def test_demo_checks_every_heads_kwargs_before_training(capsys, monkeypatch, tmp_path):
    import marginface.demo.pipeline as pipeline

    rendered = []
    monkeypatch.setattr(pipeline, "_render_all", lambda cfg: rendered.append(cfg))
    line = one_line(capsys, "demo", "--quick", "--heads", "softmax,arcface", "--output",
                    tmp_path / "d", "--head-kwargs", '{"arcface": {"s": "big"}}')  # fmt: skip
    assert "--head-kwargs for arcface" in line and "hyperparameter s" in line
    assert not rendered


def test_disk_full_while_saving_is_an_os_error(monkeypatch, tmp_path):
    from marginface.files import atomic_torch_save

    def full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"cannot write .*model.pt: the write failed .* MB free"):
        atomic_torch_save({"a": 1}, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []
