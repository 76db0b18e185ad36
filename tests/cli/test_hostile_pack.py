"""Issue 22, pack --pairs: --output is checked before any image is read, and errors name the
flag or the file asked for, never a temporary."""

import pytest

import marginface.data.transforms as transforms
from marginface.cli import main
from marginface.files import atomic_write_bytes


@pytest.fixture
def pairs(make_folder, tmp_path):
    root, _ = make_folder({"ann": 2})
    path = tmp_path / "pairs.txt"
    path.write_text("ann 1 2\n")
    return f"{path}::{root}"


@pytest.fixture
def no_image_read(monkeypatch):
    def refuse(source):
        raise AssertionError(f"read {source} before checking --output")

    monkeypatch.setattr(transforms, "decode_image", refuse)


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_pack_pairs_checks_output_before_reading_any_image(
    pairs, tmp_path, capsys, no_image_read, where
):
    blocker = tmp_path / "blocker"
    if where == "under_a_file":
        blocker.write_text("in the way")
        output = blocker / "x.bin"
    else:
        output = tmp_path / "folder.bin"
        output.mkdir()
    assert main(["pack", "--pairs", pairs, "--output", str(output), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marginface pack: error: --output: ")
    assert ".tmp" not in err[0]


def test_pack_pairs_api_checks_output_first(pairs, tmp_path, no_image_read):
    from marginface.data.formats.verification import pairs_to_bin

    (tmp_path / "blocker").write_text("in the way")
    file, _, folder = pairs.partition("::")
    with pytest.raises(OSError, match="output: "):
        pairs_to_bin(file, tmp_path / "blocker" / "x.bin", folder)


def test_a_failed_temporary_names_the_file_asked_for(tmp_path, monkeypatch):
    import tempfile

    def full(prefix, suffix, dir):
        raise OSError(28, "No space left on device", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OSError, match="cannot write .*x.bin: No space left") as info:
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert ".tmp" not in str(info.value)
