"""Crash-safe file writes: a unique temporary file beside the target, fsync, ``os.replace``, fsync of the folder."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

from kb.errors import StorageError

TEMPORARY_SUFFIX = ".tmp"
ABANDONED_AFTER_S = 3600.0  # a save writes its file until it renames it: one untouched this long will never finish


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a reader, or the file after a crash, holds the old or the new bytes.

    The temporary name is unique, so two writers never share it; ``mode`` is set before any byte is written (0o600
    for files that may hold secrets). A folder that cannot be written (read-only, disk full) raises ``StorageError``
    naming the cause, with nothing left behind.
    """
    try:
        _write(path, data, mode)
    except OSError as error:
        raise StorageError(f"cannot write {path}: {error.strerror or error}") from error


def _write(path: Path, data: bytes, mode: int) -> None:
    # The writer's process id in the name tells a killed save's leftover from a live one (abandoned_temporaries).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=TEMPORARY_SUFFIX)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def abandoned_temporaries(folder: Path) -> list[Path]:
    """The temporary files in ``folder`` whose save will never finish: the process named in one is gone, or it has
    not been written to for ``ABANDONED_AFTER_S`` (a name without a process id, or one reused). Another process's
    live save is left out, so deleting these never breaks one."""
    now = time.time()
    found: list[Path] = []
    for path in sorted(folder.glob(f"*{TEMPORARY_SUFFIX}")):
        try:
            status = path.lstat()
        except FileNotFoundError:
            continue  # its save finished or failed just now
        if not stat.S_ISREG(status.st_mode):
            continue  # a folder or link named so is no save's (deleting one failed every repair)
        untouched = now - status.st_mtime
        writer = _writer(path)
        if untouched > ABANDONED_AFTER_S or (writer is not None and not _running(writer)):
            found.append(path)
    return found


def _writer(path: Path) -> int | None:
    """The process id in a temporary file's name (``target.PID.random.tmp``), if it has one."""
    parts = path.name.removesuffix(TEMPORARY_SUFFIX).split(".")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isascii() and parts[-2].isdigit() else None


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # (a number too large to be a process's in a planted name)
        return False
    except PermissionError:
        return True  # another user's process
    return True
