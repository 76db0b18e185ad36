"""Issue 22, resume: a checkpoint with an inf weight, data that gained an identity, and a
flipped bit in a checkpoint's tensor data are each refused with the cause (exit 2); a
checkpoint without a checksum (older) still resumes."""

import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from _support.training import TINY, read_jsonl
from marginface.training import checkpoint as ckpt


def one_error(capsys, code, got):
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert err[0].startswith("marginface train: error: ")
    return err[0]


@pytest.fixture
def run(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--output", out, "--max-steps", "2") == 0
    capsys.readouterr()
    return out


def rewrite(path, change):
    """Load a checkpoint, change it, save it again with a valid checksum."""
    blob = torch.load(path, weights_only=True)
    change(blob)
    blob.pop("checksum", None)
    ckpt.save_checkpoint(path, {k: v for k, v in blob.items() if k != "format"})


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_resume_from_a_checkpoint_holding_an_inf_weight(cli, run, capsys, value):
    def poison(blob):
        key = next(k for k, v in blob["backbone"].items() if v.is_floating_point())
        blob["backbone"][key].view(-1)[0] = value

    rewrite(run / "checkpoint.pt", poison)
    before = (run / "log.jsonl").read_bytes()
    line = one_error(capsys, 2, cli("--output", run, "--resume", "--quiet"))
    assert "checkpoint.pt" in line and "backbone." in line and "NaN or inf" in line
    assert "last good checkpoint" not in line
    assert (run / "log.jsonl").read_bytes() == before  # nothing trained, nothing logged


def test_resume_from_a_checkpoint_with_inf_optimizer_state(cli, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(*TINY, "--optimizer", "adamw", "--output", out, "--max-steps", "2") == 0
    capsys.readouterr()

    def poison(blob):
        state = next(iter(blob["optimizer"]["state"].values()))
        key = next(k for k, v in state.items() if torch.is_tensor(v) and v.numel() > 1)
        state[key].view(-1)[0] = float("inf")

    rewrite(out / "checkpoint.pt", poison)
    line = one_error(capsys, 2, cli("--output", out, "--resume", "--quiet"))
    assert "optimizer" in line and "NaN or inf" in line


def faces(root, identities):
    rng = np.random.default_rng(0)
    for i in range(identities):
        (root / f"id{i}").mkdir(parents=True, exist_ok=True)
        for k in range(4):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"id{i}" / f"{k}.png")


def test_resume_after_the_data_gained_an_identity(cli, tmp_path, capsys):
    data, out = tmp_path / "faces", tmp_path / "run"
    faces(data, 3)
    args = [*TINY, "--data", data, "--output", out]
    assert cli(*args, "--max-steps", "1") == 0
    capsys.readouterr()
    faces(data, 4)  # a new identity folder
    line = one_error(capsys, 2, cli("--output", out, "--resume", "--quiet"))
    assert "checkpoint's head has 3 classes but the data now has 4 identities" in line


def flip_a_bit_in_the_largest_tensor(path):
    """Flip one bit in the middle of the largest tensor record of torch's zip (stored, not
    compressed: its bytes follow the member's local header)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[header + 26 : header + 30])
    raw[header + 30 + name_len + extra_len + info.file_size // 2] ^= 0x04
    path.write_bytes(bytes(raw))


def test_checkpoint_with_a_flipped_bit_is_refused(cli, run, capsys):
    path = run / "checkpoint.pt"
    good = torch.load(path, weights_only=True)
    flip_a_bit_in_the_largest_tensor(path)
    bad = torch.load(path, weights_only=True)  # torch itself loads it without a word
    changed = [k for k in good["backbone"] if not torch.equal(good["backbone"][k],
                                                               bad["backbone"][k])]  # fmt: skip
    changed += [k for k in good["head"] if not torch.equal(good["head"][k], bad["head"][k])]
    assert changed or good["optimizer"] != bad["optimizer"]
    line = one_error(capsys, 2, cli("--output", run, "--resume", "--quiet"))
    assert "checkpoint.pt: checksum mismatch" in line
    from marginface.backbones.checkpoint import load_model

    with pytest.raises(ValueError, match="checksum mismatch"):
        load_model(path)


def test_a_checkpoint_records_its_checksum_and_loads(run):
    blob = ckpt.load_checkpoint(run / "checkpoint.pt")
    assert blob["checksum"]["digest"] == ckpt.DIGEST
    assert blob["checksum"]["value"] == ckpt.payload_digest(blob)


def test_an_old_checkpoint_without_a_checksum_still_resumes(cli, run, capsys):
    path = run / "checkpoint.pt"
    blob = torch.load(path, weights_only=True)
    del blob["checksum"]
    torch.save(blob, path)
    assert not ckpt.verify_checksum(ckpt.load_checkpoint(path), path)
    assert cli("--output", run, "--resume", "--quiet", "--max-steps", "3") == 0
    steps = [r["step"] for r in read_jsonl(run / "log.jsonl") if r.get("type") == "train"]
    assert steps[-1] == 3
