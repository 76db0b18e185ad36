"""Files the project writes, and paths it reads from data files.

Writing: every output file is written under a temporary name in its own folder
(``.NAME.PID.XXXXXX.tmp``) and renamed over the target only once it is complete, so a crash, a
full disk or a file-size limit never leaves a half-written file where a good one was.
:func:`atomic_write` takes a callable that writes to a file object; :func:`atomic_paths` hands
out temporary paths for writers that want a file name (ONNX export, a RecordIO pack and its
index, renamed together). A temporary left behind by a killed process is removed by
:func:`clean_stale_temporaries` (its process id is in its name).

Reading: files named by the user or by a data file are opened with :func:`open_regular`, which
refuses anything but a regular file (a FIFO would block the reader forever). A path found
inside a data file (a landmarks file, a pairs.txt, a gallery list, a
pack's identity names) is resolved with :func:`resolve_inside`, which refuses one that leaves
its root folder (``../x``, an absolute path, a symlink pointing out).

Checking outputs before work starts: :func:`check_writable_file` and
:func:`check_writable_dir`. Locking a folder against a second process: :class:`FolderLock`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

_TEMP = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def _temporary(path: Path) -> str:
    """A new empty temporary file beside ``path`` with the usual (umask) permissions; an
    OSError names ``path`` (what the user asked for), not the temporary."""
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise type(exc)(exc.errno, f"cannot write {path}: {reason}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    return tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike, sync: bool = True) -> Iterator[list[Path]]:
    """Temporary paths for ``paths``, renamed over them together when the block succeeds.

    On any exception (KeyboardInterrupt included) every temporary is removed and the targets
    are left as they were. The folders are created if needed. ``sync=False`` skips the fsync
    before the rename: a reader still sees a whole file or none, but a crash of the machine
    may lose the file (for caches, whose entries can be made again).
    """
    targets = [Path(p) for p in paths]
    temps: list[str] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            temps.append(_temporary(target))
        yield [Path(t) for t in temps]
        for tmp in temps if sync else ():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(
    path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb", sync: bool = True
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it (unless ``sync`` is
    False: see :func:`atomic_paths`), rename it to ``path``. Returns ``path``."""
    path = Path(path)
    with atomic_paths(path, sync=sync) as (tmp,), open(tmp, mode) as f:
        write(f)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, sync: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    return atomic_write(path, lambda f: f.write(data), sync=sync)


def atomic_write_text(path: str | os.PathLike, text: str, sync: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file and a rename."""
    return atomic_write_bytes(path, text.encode("utf-8"), sync=sync)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` via a temporary file and a rename.

    A write that fails inside torch's zip writer (a full disk, a file-size limit) surfaces as
    a RuntimeError ("enforce fail at inline_container.cc"); it is raised as an OSError naming
    ``path`` and the free space left."""
    import torch

    path = Path(path)

    def save(f: Any) -> None:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:
            text = str(exc)
            if "enforce fail" not in text and "PytorchStreamWriter" not in text:
                raise
            free = shutil.disk_usage(path.parent).free / 1e6
            first = text.strip().splitlines()[0]
            raise OSError(
                f"cannot write {path}: the write failed ({first}); {free:.1f} MB free on its disk"
            ) from exc

    return atomic_write(path, save)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temporaries(folder: str | os.PathLike, every: bool = False) -> list[Path]:
    """Remove the temporaries of :func:`atomic_paths` in ``folder`` whose process is gone
    (``every``: all of them, for a folder locked by the caller). Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP.match(entry.name)
        if every and match is None and entry.name.startswith(".") and entry.name.endswith(".tmp"):
            match = _TEMP.match(".x.0.x.tmp")  # an older temporary without a process id
        if match is None or not entry.is_file():
            continue
        if every or not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------
# reading data files
# ---------------------------------------------------------------------------------------------
def open_regular(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """``path`` opened for reading in binary, only if it is a regular file (symlinks to one
    followed). A FIFO, a device or a socket is refused without blocking on it (it is opened
    non-blocking, and checked with ``stat`` before and ``fstat`` after opening, before anything
    is read): :class:`NotRegularFile` (an OSError) naming ``what``.
    Every reader of a file named by the user or by a data file opens it through here."""
    from marginface.text import printable

    path = Path(path)
    try:  # refused before it is opened where that can be told now
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # os.open below says why
    if mode is not None:
        _check_regular(mode, path, what)

    def opener(name: str, flags: int) -> int:
        fd = os.open(name, flags | os.O_NONBLOCK)
        try:
            _check_regular(os.fstat(fd).st_mode, path, what)  # what was opened, if it changed
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    try:
        return open(path, "rb", opener=opener)  # noqa: SIM115 - the caller closes it
    except NotRegularFile:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {printable(path)} does not exist") from None
    except OSError as exc:
        raise type(exc)(exc.errno, f"{what} {printable(path)}: {exc.strerror}") from None


class NotRegularFile(OSError):
    """A path that names a folder, a FIFO, a device or a socket where a file is read."""


def _check_regular(mode: int, path: Path, what: str) -> None:
    from marginface.text import printable

    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
        raise NotRegularFile(f"{what} {printable(path)} is {kind}; only regular files are read")


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of regular file ``path`` (:func:`open_regular`)."""
    with open_regular(path, what) as f:
        return f.read()


def file_sha256(path: str | os.PathLike, what: str = "file") -> str:
    """The sha256 (hex) of regular file ``path`` (:func:`open_regular`), read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open_regular(path, what) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path``; FileNotFoundError / ValueError naming ``what`` and the file
    (with the offending byte's position) when it is missing, not a regular file or not UTF-8
    text."""
    path = Path(path)
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{what} {path} is not UTF-8 text: line {line}, byte {exc.start} is "
            f"0x{data[exc.start]:02x}"
        ) from None


def resolve_inside(root: str | os.PathLike, relative: str | os.PathLike, where: str) -> Path:
    """``root / relative`` resolved (symlinks followed); ValueError naming ``where`` when it is
    absolute or ends up outside ``root``."""
    from marginface.text import printable, short_repr

    text = os.fspath(relative)
    if not text or "\0" in text:
        raise ValueError(f"{where}: {short_repr(text)} is not a usable path")
    if os.path.isabs(text):
        raise ValueError(
            f"{where}: {short_repr(text)} is an absolute path; paths here are relative"
        )
    base = Path(root).resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise ValueError(
            f"{where}: {short_repr(text)} leads outside {printable(root)} "
            f"(to {printable(target)}); refused"
        )
    return target


# ---------------------------------------------------------------------------------------------
# outputs checked before the work
# ---------------------------------------------------------------------------------------------
def _probe_folder(folder: Path, what: str) -> None:
    """An existing folder gets a probe file written and removed; a folder still to be made
    needs its nearest existing ancestor to be a writable folder (nothing is created)."""
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{what}: {ancestor} is a file, so folder {folder} cannot exist")
    if ancestor != folder:
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise PermissionError(f"{what}: folder {folder} cannot be created in {ancestor}")
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PermissionError(f"{what}: folder {folder} is not writable ({reason})") from None
    clean_stale_temporaries(folder)


def check_writable_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Prove that folder ``path`` takes files (or can be created); OSError naming ``what``
    (e.g. ``--output``) and the folder otherwise. Temporaries that killed writers left in it
    are removed."""
    path = Path(path)
    _probe_folder(path, what)
    return path


def check_writable_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Prove that file ``path`` can be written (its folder exists or can be made and takes a
    file; ``path`` itself is not a folder and, if it exists, is writable)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what}: {path} is a folder, not a file")
    _probe_folder(path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what}: file {path} is not writable")
    return path


class FolderLock:
    """An exclusive lock on ``folder`` (``folder/.lock``, ``fcntl.flock``) for as long as it is
    held; the lock goes with the process, so a crashed run never leaves a folder locked.

    ``acquire`` raises BlockingIOError naming the folder when another process holds it.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "folder") -> None:
        self.folder, self.what = Path(folder), what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BlockingIOError(
                f"{self.what} {self.folder} is in use by another process (it holds "
                f"{self.folder / '.lock'}); wait for it or choose another folder"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
