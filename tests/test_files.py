"""marginface.files: atomic writes (alone and in groups), stale temporaries, output checks,
folder locks."""

import os
import subprocess
import sys

import pytest

from marginface import files


def test_atomic_paths_rename_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "x.rec", tmp_path / "x.idx"
    a.write_text("old rec")
    b.write_text("old idx")
    with pytest.raises(OSError, match="disk full"), files.atomic_paths(a, b) as (ta, tb):
        ta.write_text("new rec")
        raise OSError("disk full")
    assert (a.read_text(), b.read_text()) == ("old rec", "old idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.idx", "x.rec"]
    with files.atomic_paths(a, b) as (ta, tb):
        ta.write_text("new rec")
        tb.write_text("new idx")
    assert (a.read_text(), b.read_text()) == ("new rec", "new idx")


def test_temporaries_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".model.pt.{dead}.abc123.tmp"
    alive = tmp_path / f".model.pt.{os.getpid()}.abc123.tmp"
    other = tmp_path / ".notes.tmp"
    for path in (stale, alive, other):
        path.write_text("x")
    assert files.clean_stale_temporaries(tmp_path) == [stale]
    assert alive.exists() and other.exists()
    assert sorted(files.clean_stale_temporaries(tmp_path, every=True)) == sorted([alive, other])


def test_output_checks(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="--output: .*file is a file"):
        files.check_writable_dir(blocker / "a" / "b", "--output")
    with pytest.raises(IsADirectoryError, match="--out: .* is a folder"):
        files.check_writable_file(tmp_path, "--out")
    assert files.check_writable_dir(tmp_path / "new" / "deep", "--output")
    assert not (tmp_path / "new").exists()  # checked, not created

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match="--output: folder .* is not writable"):
        files.check_writable_dir(tmp_path, "--output")
    monkeypatch.setattr(files.os, "access", lambda *a: False)
    with pytest.raises(PermissionError, match="cannot be created in"):
        files.check_writable_dir(tmp_path / "new", "--output")


def test_folder_lock_is_exclusive_and_released(tmp_path):
    with files.FolderLock(tmp_path, "run folder"):
        with pytest.raises(BlockingIOError, match="run folder .* is in use by another process"):
            files.FolderLock(tmp_path, "run folder").acquire()
    files.FolderLock(tmp_path).acquire().release()


def test_read_text_names_the_bad_byte(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"ok\nok\n\xc3(\n")
    with pytest.raises(ValueError, match=r"list .*a.txt is not UTF-8 text: line 3, byte 6 is 0xc3"):
        files.read_text(tmp_path / "a.txt", "list")
    with pytest.raises(FileNotFoundError, match="list .*none.txt does not exist"):
        files.read_text(tmp_path / "none.txt", "list")


def test_files_is_the_only_module_that_renames_into_place():
    """One atomic-write module: every other module writes through marginface.files (no
    temporaries of its own, no rename into place), so every output gets the same rules (fsync,
    folders created, usual permissions, stale temporaries cleaned)."""
    import re
    from pathlib import Path

    src = Path(files.__file__).parent
    pattern = re.compile(r"os\.replace\(|os\.rename\(|\.rename\(|mkstemp\(|NamedTemporaryFile\(")
    #: not writes: moving an earlier run's log aside (training/preflight.py)
    allowed = {"training/preflight.py"}
    found = []
    for path in sorted(src.rglob("*.py")):
        name = path.relative_to(src).as_posix()
        if name == "files.py" or name in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "write through marginface.files instead:\n" + "\n".join(found)
