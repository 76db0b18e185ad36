"""Integration with ``marginface train``: eval / verify / export on a real run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from marginface.cli import main


@pytest.mark.slow
def test_eval_verify_export_on_a_train_run(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            "synthetic:8x4",
            "--head",
            "cosface",
            "--backbone",
            "small_cnn",
            "--image-size",
            "16",
            "--embedding-size",
            "16",
            "--batch-size",
            "16",
            "--max-steps",
            "3",
            "--output",
            str(run),
            "--quiet",
            "--no-tensorboard",
            "--pairs",
            "synthetic:6x3,first=400",
        ]
    )
    assert code == 0, capsys.readouterr().err
    calibration = json.loads((run / "model.json").read_text())["calibration"]
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--checkpoint",
            str(run),
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--pairs",
            "synthetic:6x3,first=400",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    # model.pt and checkpoint.pt of one run hold the same weights
    first, second = (m["synthetic"] for m in metrics.values())
    assert first["auc"] == second["auc"] and len(metrics) == 2
    image = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert main(["verify", str(image), str(image), "--checkpoint", str(run)]) == 0
    stdout = capsys.readouterr().out
    # the run calibrated its last weights on its validation set (18 impostor pairs: FAR 0.1)
    assert calibration["far"] == 0.1 and calibration["step"] == 3
    assert f"(threshold {calibration['threshold']:.4f}: calibrated at FAR 1e-01" in stdout
    assert " same " in stdout
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(run / "checkpoint.pt"),
                "--output",
                str(tmp_path / "m.onnx"),
            ]
        )
        == 0
    )
    assert (tmp_path / "m.onnx").is_file()
