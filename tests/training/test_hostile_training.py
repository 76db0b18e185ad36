"""Nothing is lost in training: any error saves the last completed step, validation sets are
read before the first step, weights that are not finite are never written, absurd settings
are refused, the run folder is locked and cleaned of what a killed run left."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import marginface.training.loop as loop
from _support.training import TINY, read_jsonl, train_losses
from marginface.files import FolderLock


def one_error_line(capsys, prefix="marginface train: error: "):
    # the scale and loss-path lines the trainer prints at the start
    info = ("marginface train: head ", "marginface train: loss: ")
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if "warning" not in line and not line.startswith(info)
    ]
    assert len(err) == 1, err
    assert err[0].startswith(prefix)
    return err[0]


def test_unreadable_val_set_fails_before_the_first_step(cli, tmp_path, capsys):
    """The issue's reproduction 3: a .bin of undecodable images was found only at validation
    time, after 8 steps, with a traceback and no checkpoint."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(pickle.dumps(([b"x"] * 4, [True, False])))
    out = tmp_path / "r"
    assert cli(*TINY, "--epochs", "1", "--pairs", bad, "--output", out) == 2
    line = one_error_line(capsys)
    assert "validation set" in line and "bad.bin" in line and "no readable image" in line
    assert not (out / "log.jsonl").exists() and not (out / "checkpoint.pt").exists()


def test_a_bad_loss_path_setting_fails_before_the_run_folder_gets_a_file(
    cli, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MARGINFACE_FUSED_PATH", "fast")
    out = tmp_path / "r"
    assert cli(*TINY, "--epochs", "1", "--output", out) == 2
    line = one_error_line(capsys)
    assert "MARGINFACE_FUSED_PATH" in line and "'fast'" in line
    assert not (out / "config.yaml").exists() and not (out / "log.jsonl").exists()


def test_an_error_mid_run_saves_the_last_completed_step(cli, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    forward = loop.TrainModule.forward

    def fails(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError(28, "No space left on device")
        return forward(self, images, labels)

    monkeypatch.setattr(loop.TrainModule, "forward", fails)
    out = tmp_path / "r"
    assert cli(*TINY, "--epochs", "3", "--output", out) == 2
    line = one_error_line(capsys)
    assert "No space left on device" in line and "checkpoint of step 5 saved" in line
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"] == 5
    monkeypatch.setattr(loop.TrainModule, "forward", forward)
    assert cli("--output", out, "--resume", "--quiet") == 0
    straight = tmp_path / "s"
    assert cli(*TINY, "--epochs", "3", "--output", straight) == 0
    assert train_losses(out) == train_losses(straight)  # nothing lost, nothing repeated


def test_non_finite_weights_are_never_written(cli, tmp_path, monkeypatch, capsys):
    step = torch.optim.SGD.step
    calls = {"n": 0}

    def poisons(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", poisons)
    out = tmp_path / "r"
    assert cli(*TINY, "--epochs", "3", "--output", out) == 1
    assert "non-finite weights appeared at step 6" in one_error_line(capsys)
    for name in ("checkpoint.pt", "model.pt"):
        blob = torch.load(out / name, weights_only=True)
        state = blob.get("backbone", blob)
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"] == 4


def test_max_steps_1_with_nan_weights_does_not_exit_0(cli, tmp_path, monkeypatch, capsys):
    """Reproduction 5: `--max-steps 1` with NaN weights exited 0 having saved them."""
    step = torch.optim.SGD.step

    def poisons(self, *args, **kwargs):
        step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))

    monkeypatch.setattr(torch.optim.SGD, "step", poisons)
    out = tmp_path / "r"
    assert cli(*TINY, "--max-steps", "1", "--output", out) == 1
    capsys.readouterr()
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "inf", "config lr: must be a finite number >= 0, got inf"),
        ("--lr", "nan", "config lr: must be a finite number"),
        ("--weight-decay", "inf", "config weight_decay: must be a finite number >= 0"),
        ("--momentum", "50", "config momentum: must be in [0, 1), got 50.0"),
        ("--head-s", "abc", "head 'arcface' hyperparameter s: must be a finite number"),
        ("--head-m", "nan", "head 'arcface' hyperparameter m: must be a finite number"),
        ("--device", "cuda:99", "config device 'cuda:99'"),
    ],
)
def test_absurd_settings_are_one_line(cli, tmp_path, capsys, flag, value, message):
    if flag == "--device" and torch.cuda.is_available():
        pytest.skip("needs a machine without cuda:99")
    assert cli(*TINY, "--epochs", "1", flag, value, "--output", tmp_path / "r") == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_yaml_output_that_is_not_a_path(cli, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("output: 123\n")
    assert cli(*TINY, "--config", tmp_path / "c.yaml") == 2
    assert "config output: must be a folder path, got 123" in one_error_line(capsys)


def test_one_identity_is_refused(cli, tmp_path, capsys):
    args = [a if a != "synthetic:8x4" else "synthetic:1x8" for a in TINY]
    assert cli(*args, "--output", tmp_path / "r") == 2
    assert "has 1 identity: a classifier needs at least 2" in one_error_line(capsys)


def test_output_inside_data_is_refused(cli, tmp_path, capsys):
    data = tmp_path / "faces"
    for who in ("a", "b"):
        (data / who).mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(data / who / "1.png")
    args = [a if a != "synthetic:8x4" else str(data) for a in TINY]
    assert cli(*args, "--output", data / "run") == 2
    assert "lies inside the dataset folder" in one_error_line(capsys)
    assert not (data / "run" / "log.jsonl").exists()


def test_a_second_run_into_a_locked_folder_is_refused(cli, tmp_path, capsys):
    out = tmp_path / "r"
    with FolderLock(out):  # another run holds the folder
        assert cli(*TINY, "--epochs", "1", "--output", out) == 2
    assert "is in use by another process" in one_error_line(capsys)
    assert not (out / "log.jsonl").exists()


def test_stale_temporaries_and_a_crashed_runs_log(cli, tmp_path, capsys):
    out = tmp_path / "r"
    (out / "best").mkdir(parents=True)
    stale = [out / ".checkpoint.pt.4242.abc123.tmp", out / ".model.pt.k2j3h4.tmp",
             out / "best" / ".model.pt.99999999.x1.tmp"]  # fmt: skip
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (out / "log.jsonl").write_text('{"type": "train", "step": 1, "loss": 9.0}\n')
    with pytest.warns(UserWarning, match="moved to log.previous.jsonl"):
        assert cli(*TINY, "--epochs", "1", "--output", out) == 0
    assert not any(p.exists() for p in stale)
    assert read_jsonl(out / "log.previous.jsonl")[0]["loss"] == 9.0
    assert [s for s, _ in train_losses(out)] == [1, 2, 3, 4]  # a new log, not appended


def test_unreadable_images_are_skipped_then_capped(cli, tmp_path, capsys, monkeypatch):
    """Reproduction 3's second half: a decompression bomb (and any other image Pillow refuses)
    is an unreadable image, skipped and counted; past --max-bad-images the run stops with the
    list, and the steps done so far are saved."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a bomb: > 2000 pixels
    data = tmp_path / "faces"
    for who in ("a", "b"):
        (data / who).mkdir(parents=True)
        for i in range(6):
            pixels = np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / who / f"{i}.png")
    Image.new("RGB", (64, 64)).save(data / "b" / "bomb.png")
    args = [a if a != "synthetic:8x4" else str(data) for a in TINY]
    batch = ["--batch-size", "4"]
    with pytest.warns(UserWarning, match="unreadable image .*bomb.png.*DecompressionBombError"):
        assert cli(*args, *batch, "--epochs", "1", "--output", tmp_path / "ok") == 0
    out = tmp_path / "r"
    # seed 1 draws the bomb in the third batch: steps 1 and 2 are done when the run stops
    code = cli(*args, *batch, "--seed", "1", "--max-bad-images", "0", "--output", out)
    assert code == 2
    line = one_error_line(capsys)
    assert "1 unreadable images, more than the 0 allowed" in line and "bomb.png" in line
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["step"] == 2
    assert "checkpoint of step 2 saved" in line


def test_decompression_bomb_warning_turned_error_is_unreadable(monkeypatch, tmp_path):
    from marginface.data.transforms import UnreadableImage, decode_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")  # 1600 px: a warning, not an error
    with pytest.warns(Image.DecompressionBombWarning):
        decode_image(tmp_path / "big.png")
    with warnings.catch_warnings(), pytest.raises(UnreadableImage, match="DecompressionBomb"):
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        decode_image(tmp_path / "big.png")


def test_malicious_val_bin_runs_nothing(cli, tmp_path, capsys):
    """Reproduction 1 through `train --val`."""
    import os

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    (tmp_path / "lfw.bin").write_bytes(pickle.dumps(Exploit()))
    assert cli(*TINY, "--pairs", tmp_path / "lfw.bin", "--output", tmp_path / "r") == 2
    assert "lfw.bin: refused" in one_error_line(capsys)
    assert not (tmp_path / "PWNED").exists()


def test_config_file_that_is_not_utf8(cli, tmp_path, capsys):
    (tmp_path / "c.yaml").write_bytes(b"lr: 0.1\nhead: \xff\n")
    assert cli(*TINY, "--config", tmp_path / "c.yaml") == 2
    assert "c.yaml is not UTF-8 text: line 2" in one_error_line(capsys)
