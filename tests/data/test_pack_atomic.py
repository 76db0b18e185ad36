"""A pack, its index and its names file are replaced together or not at all."""

import pytest

from marginface.cli import main
from marginface.data import open_dataset
from marginface.data.formats.recordio import RecordWriter, write_pack


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_repack_leaves_the_old_pack(tmp_path, make_folder, monkeypatch, capsys):
    """The issue's reproduction (`ulimit -f 100; marginface pack ...` over a good pack): a write
    error in the middle of re-packing must leave the old pack readable."""
    folder, _ = make_folder({"a": 3, "b": 2})
    out = tmp_path / "packs" / "train.rec"
    assert main(["pack", str(folder), str(out), "--quiet"]) == 0
    before = snapshot(out.parent)
    calls = {"n": 0}
    write_part = RecordWriter._write_part

    def file_too_large(self, data, cflag):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(27, "File too large")
        write_part(self, data, cflag)

    monkeypatch.setattr(RecordWriter, "_write_part", file_too_large)
    assert main(["pack", str(folder), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("marginface pack: error: ") and "File too large" in err[-1]
    assert snapshot(out.parent) == before  # no temporary left either
    assert len(open_dataset(out)) == 5


def test_bad_item_midway_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="grouped by label"):
        write_pack(tmp_path / "p.rec", [(1, b"x"), (0, b"y")], 2)
    assert list(tmp_path.iterdir()) == []


def test_identity_name_with_a_line_break_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"identity name 'a\\nb' .* line break"):
        write_pack(tmp_path / "p.rec", [(0, b"x"), (1, b"y")], 2, identity_names=["a\nb", "c"])
    assert list(tmp_path.iterdir()) == []


def test_repack_under_a_file_size_limit_in_a_real_process(tmp_path, make_folder):
    """The issue's reproduction as it was run: `(ulimit -f 100; marginface pack ...)` over a
    good pack. Python ignores SIGXFSZ, so the write fails with EFBIG; the old pack stays."""
    import os
    import resource
    import subprocess
    import sys
    from pathlib import Path

    import marginface

    folder, _ = make_folder({f"id{i}": 4 for i in range(6)}, size=(40, 40))
    out = tmp_path / "packs" / "train.rec"
    assert main(["pack", str(folder), str(out), "--quiet"]) == 0
    before = snapshot(out.parent)
    limit = out.stat().st_size // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(Path(marginface.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "marginface", "pack", str(folder), str(out), "--quiet"],
        capture_output=True, text=True, env=env, preexec_fn=small_files,
    )  # fmt: skip
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marginface pack: error: ")
    assert "File too large" in err[0]
    assert snapshot(out.parent) == before
    assert len(open_dataset(out)) == 24
