"""Crash-safe file writes: a unique temporary file beside the target, fsync, ``os.replace``, fsync of the folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kb.errors import StorageError


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
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
