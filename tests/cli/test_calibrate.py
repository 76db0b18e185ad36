"""``marginface calibrate`` and the threshold it leaves in model.json (used by ``verify`` and
``search``); the refusal of untrained models; the missing ``--checkpoint`` line."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from marginface.cli import main

SYNTH = "synthetic:30x4,first=300"  # 180 genuine + 180 impostor pairs: FAR 1e-2 resolvable


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model(trained_run, tmp_path):
    """A copy of the trained run (model.json without calibration), to write into."""
    run = tmp_path / "model"
    shutil.copytree(trained_run, run)
    return run


def test_calibrate_writes_the_key_and_verify_uses_it(model, face_folder, tmp_path, capsys):
    code, out, err = _run(
        ["calibrate", "--checkpoint", model, "--pairs", SYNTH, "--far", "1e-2", "--quiet"], capsys
    )
    assert code == 0, err
    assert out.startswith(f"calibrated {model}: threshold ") and out.count("\n") == 1
    info = json.loads((model / "model.json").read_text())
    cal = info["calibration"]
    assert info["threshold"] == cal["threshold"]  # the older key says the same
    assert (cal["far"], cal["pairs"], cal["pairs_spec"]) == (0.01, "synthetic", SYNTH)
    assert (cal["genuine"], cal["impostor"]) == (180, 180) and cal["false_accepts"] <= 1
    assert cal["bootstrap"]["over"] == "identities" and cal["bootstrap"]["count"] == 30
    low, high = cal["tar_interval"]
    assert 0 <= low <= cal["tar"] <= high <= 1 and cal["date"].endswith("Z")
    # the TAR recorded is the one marginface eval reports at that FAR on the same pairs
    code, _, err = _run(
        ["eval", "--checkpoint", model, "--pairs", SYNTH, "--output", tmp_path / "e", "--quiet"],
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())["synthetic"]
    assert cal["tar"] == pytest.approx(metrics["tar_at_far"]["1e-02"], abs=1e-12)
    # verify decides with it and says where it came from
    a = face_folder / "person00" / "person00_0001.png"
    b = face_folder / "person01" / "person01_0001.png"
    code, out, err = _run(["verify", a, b, "--checkpoint", model], capsys)
    assert code == 0, err
    score = float(out.split()[1])
    verdict = "same" if score >= cal["threshold"] else "different"
    assert out.strip().endswith(
        f"{verdict}  (threshold {cal['threshold']:.4f}: calibrated at FAR 1e-02 on synthetic)"
    )
    # --threshold overrides it
    code, out, _ = _run(["verify", a, a, "--checkpoint", model, "--threshold", "1.5"], capsys)
    assert code == 0 and out.split()[2] == "different" and "(threshold 1.5000: --threshold)" in out


def test_search_marks_matches_at_the_threshold(model, face_folder, tmp_path, capsys):
    gallery = tmp_path / "g.npz"
    assert _run(["embed", face_folder, "--checkpoint", model, "--output", gallery, "--quiet"],
                capsys)[0] == 0  # fmt: skip
    query = face_folder / "person02" / "person02_0002.png"
    argv = ["search", query, "--gallery", gallery, "--checkpoint", model, "--top-k", "2"]
    code, out, err = _run(argv, capsys)
    assert code == 0 and "has no threshold, so no score is marked 'same'" in err
    assert not any(line.endswith("same") for line in out.splitlines())
    code, out, err = _run([*argv, "--threshold", "0.999"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].endswith("  same") and float(lines[1].split()[2]) >= 0.999
    assert lines[-1] == "('same': score >= threshold 0.9990: --threshold)"


def test_far_the_set_cannot_resolve(model, capsys):
    code, _, err = _run(["calibrate", "--checkpoint", model, "--pairs", SYNTH, "--quiet"], capsys)
    assert code == 2
    assert "has 180 impostor pairs, and FAR 0.001 needs at least 1000; use --far 1e-02" in err
    assert json.loads((model / "model.json").read_text())["calibration"] is None  # untouched
    code, _, err = _run(["calibrate", "--checkpoint", model, "--pairs", SYNTH, "--far", "2"],
                        capsys)  # fmt: skip
    assert code == 2 and "--far must be a false-accept rate in (0, 1)" in err


def test_calibrate_needs_a_model_json(model, capsys):
    import torch

    from marginface.backbones.checkpoint import load_model

    net, info = load_model(model)
    ckpt = model / "checkpoint.pt"
    torch.save({"model_info": info, "backbone": net.state_dict()}, ckpt)
    code, _, err = _run(["calibrate", "--checkpoint", ckpt, "--pairs", SYNTH, "--far", "0.01"],
                        capsys)  # fmt: skip
    assert code == 2 and "calibrate writes into the model's model.json" in err


def _pairs_txt(folder, path):
    """Every genuine pair of the LFW-named folder and 24 impostor pairs."""
    people = sorted(p.name for p in folder.iterdir() if p.is_dir())
    lines = [f"{p} {i} {j}" for p in people for i, j in itertools.combinations((1, 2, 3), 2)]
    lines += [f"{a} 1 {b} 2" for a, b in itertools.permutations(people, 2)][:24]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_txt_bootstraps_over_identities_and_bin_over_pairs(model, face_folder, tmp_path,
                                                                 capsys):  # fmt: skip
    from marginface.data.formats.verification import pairs_to_bin

    pairs = _pairs_txt(face_folder, tmp_path / "pairs.txt")
    argv = ["calibrate", "--checkpoint", model, "--far", "0.1", "--quiet"]
    code, out, err = _run([*argv, "--pairs", pairs, "--images", face_folder], capsys)
    assert code == 0, err
    cal = json.loads((model / "model.json").read_text())["calibration"]
    assert (cal["genuine"], cal["impostor"]) == (18, 24)
    assert cal["bootstrap"] == {"over": "identities", "count": 6, "replicates": 1000,
                                "level": 0.95}  # fmt: skip
    assert "(95% bootstrap over identities)" in out
    binary = tmp_path / "set.bin"
    pairs_to_bin(pairs, binary, face_folder)
    code, out, err = _run([*argv, "--pairs", binary], capsys)
    assert code == 0, err
    again = json.loads((model / "model.json").read_text())["calibration"]
    assert again["bootstrap"]["over"] == "pairs" and again["bootstrap"]["count"] == 42
    assert again["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)  # the same images
    code, _, err = _run([*argv, "--pairs", binary, "--images", face_folder], capsys)
    assert code == 2 and "--images applies to a pairs.txt" in err


def test_old_model_json_without_the_keys_loads(trained_run, tmp_path):
    from marginface.backbones.checkpoint import load_model
    from marginface.evaluation.calibration import decision_threshold

    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    info = json.loads((run / "model.json").read_text())
    for key in ("calibration", "training"):
        info.pop(key, None)
    (run / "model.json").write_text(json.dumps(info))
    _, loaded = load_model(run)
    assert loaded["calibration"] is None and loaded["training"] is None
    assert decision_threshold(loaded) == (None, "none")
    assert decision_threshold({**loaded, "threshold": 0.3})[0] == 0.3


@pytest.mark.parametrize(
    "calibration, message",
    [
        ("[1]", "calibration must be a mapping or null"),
        ('{"threshold": "x", "far": 0.001}', "calibration threshold must be a finite number"),
        ('{"threshold": 0.3, "far": 0}', "calibration far must be a finite number in (0, 1)"),
    ],
)
def test_bad_calibration_is_named(model, capsys, tmp_path, calibration, message):
    from PIL import Image

    info = json.loads((model / "model.json").read_text())
    text = json.dumps(info)[:-1] + f', "calibration": {calibration}}}'
    (model / "model.json").write_text(text.replace('"calibration": null, ', ""))
    image = tmp_path / "a.png"  # images that exist: the model is what is wrong
    Image.new("RGB", (16, 16)).save(image)
    code, _, err = _run(["verify", str(image), str(image), "--checkpoint", model], capsys)
    assert code == 2 and message in err and "model.json" in err


# ------------------------------------------------------------------ untrained models
def test_untrained_models_are_refused(saved_model, model, face_folder, tmp_path, capsys):
    saved_model = shutil.copytree(saved_model, tmp_path / "untrained")  # calibrate writes to it
    a = face_folder / "person00" / "person00_0001.png"
    gallery = tmp_path / "g.npz"
    np.savez(gallery, embeddings=np.ones((2, 8), np.float32), names=np.array(["x", "y"]))
    commands = {
        "verify": ["verify", a, a, "--threshold", "0.5"],
        "search": ["search", a, "--gallery", gallery],
        "calibrate": ["calibrate", "--pairs", SYNTH, "--far", "0.01", "--quiet"],
    }
    for name, argv in commands.items():
        code, _, err = _run([*argv, "--checkpoint", saved_model], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (name, err)
        assert f"marginface {name}: error: refused: model {saved_model} looks untrained: its " \
               "weights are straight from initialisation" in err  # fmt: skip
        assert "--allow-untrained" in err
        code, _, err = _run([*argv, "--checkpoint", saved_model, "--allow-untrained"], capsys)
        assert code == 0, (name, err)
    # trained weights but no record of training or import: refused, saying so
    info = json.loads((model / "model.json").read_text())
    info["training"] = None
    (model / "model.json").write_text(json.dumps(info))
    code, _, err = _run([*commands["verify"], "--checkpoint", model], capsys)
    assert code == 2 and "nothing says it was trained" in err
    info["source"] = {"path": "w600k_r50.onnx"}  # an imported model (marginface import)
    (model / "model.json").write_text(json.dumps(info))
    assert _run([*commands["verify"], "--checkpoint", model], capsys)[0] == 0


def test_initial_weights_are_recognised(trained_run):
    """The test of backbones.trained, on every built-in family as built and on a trained one."""
    import torch

    import marginface
    from marginface.backbones.checkpoint import load_model
    from marginface.backbones.trained import at_initialisation

    for name in ("small_cnn", "iresnet18", "mobilefacenet"):
        net = marginface.create_backbone(name, embedding_size=8, input_size=32)
        assert at_initialisation(net), name
        net.train()
        with torch.no_grad():
            net(torch.rand(2, 3, 32, 32))  # one train-mode pass moves the statistics
        assert not at_initialisation(net), name
    assert not at_initialisation(load_model(trained_run)[0])
    assert not at_initialisation(torch.nn.Linear(2, 2))  # no BatchNorm: no verdict


# ------------------------------------------------------------------ no --checkpoint
@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "a.jpg", "b.jpg", "--detect"],
        ["search", "a.jpg", "--gallery", "g.npz"],
        ["embed", "faces", "--output", "e.npz"],
        ["calibrate", "--pairs", "lfw.bin"],
        ["eval", "--pairs", "lfw.bin", "--output", "out"],
        ["export", "--output", "m.onnx"],
    ],
)
def test_missing_checkpoint_points_to_the_readme(argv, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == ""
    assert err == (
        f"marginface {argv[0]}: error: no model given: pass --checkpoint PATH, a model folder "
        "(made by marginface import from a published face model: README.md, 'Use a published "
        "model') or the run folder of marginface train\n"
    )


def test_csv_pairs(model, face_folder, tmp_path, capsys):
    """A CSV pair list: the same pairs as the pairs.txt give the same threshold; with an
    identity column the bootstrap is over identities, without one over pairs."""
    pairs = _pairs_txt(face_folder, tmp_path / "pairs.txt")
    rows, plain = ["a,b,same,identity"], ["a,b,same"]
    for line in pairs.read_text().split("\n")[:-1]:
        f = line.split()
        a, b = (f[0], f[1]), (f[0], f[2]) if len(f) == 3 else (f[2], f[3])
        paths = [f"{n}/{n}_{int(i):04d}.png" for n, i in (a, b)]
        rows.append(f"{paths[0]},{paths[1]},{int(len(f) == 3)},{f[0]}")
        plain.append(f"{paths[0]},{paths[1]},{'same' if len(f) == 3 else 'different'}")
    (tmp_path / "ids.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "plain.csv").write_text("\n".join(plain) + "\n")
    argv = ["calibrate", "--checkpoint", model, "--far", "0.1", "--quiet", "--images", face_folder]
    found = {}
    for name in ("pairs.txt", "ids.csv", "plain.csv"):
        code, _, err = _run([*argv, "--pairs", tmp_path / name], capsys)
        assert code == 0, err
        found[name] = json.loads((model / "model.json").read_text())["calibration"]
    assert found["ids.csv"]["threshold"] == found["pairs.txt"]["threshold"]
    assert found["plain.csv"]["threshold"] == found["pairs.txt"]["threshold"]
    assert found["ids.csv"]["bootstrap"]["over"] == "identities"
    assert found["ids.csv"]["tar_interval"] == found["pairs.txt"]["tar_interval"]
    assert found["plain.csv"]["bootstrap"]["over"] == "pairs"


def test_verify_images_in_python(saved_model, trained_run, face_folder):
    from marginface.backbones.checkpoint import load_model
    from marginface.inference.verify import verify_images

    a = face_folder / "person00" / "person00_0001.png"
    model, info = load_model(saved_model)
    with pytest.raises(ValueError, match="refused: the model looks untrained: its weights"):
        verify_images(model, info, a, a)
    result = verify_images(model, info, a, a, allow_untrained=True)
    assert result["same"] is True and result["origin"] == "model.json's threshold, not " \
        "calibrated: FAR unknown"  # fmt: skip
    model, info = load_model(trained_run)
    result = verify_images(model, info, a, a, aligner=None)
    assert result["same"] is None and result["threshold"] is None
    assert result["score"] == pytest.approx(1.0, abs=1e-5)
