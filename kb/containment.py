"""The one containment rule for every file the knowledge base reads from a source, or will ever serve from one.

A file is read only if its real path lies inside the source folder, it is a regular file, and the file opened is
the one that was checked: every folder on the way is opened without following a symlink, the file itself with
``O_NOFOLLOW | O_NONBLOCK`` (a FIFO swapped in cannot block the open), and ``fstat`` of what was opened must match
the ``lstat`` made just before (and the scan's, when the caller has one). Whatever the cause of a refusal (outside
the folder, missing, a link, a device, unreadable), the message is the same, so a report never says whether some
path outside the folder exists.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from kb.errors import KbError

REFUSED = "not a readable regular file inside the source folder"
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A folder only passed through needs searching, not reading (a 0711 home folder): O_PATH where the system has it.
_TRAVERSE_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_READ_CHUNK = 1 << 20
_NOT_OWN = "not a regular file (a symlink, a FIFO or a device was put in its place)"
DATA_FILE_LIMIT = 512 << 20  # bytes of one training or evaluation file: SQuAD 2.0's whole training set is 42 MB


class RefusedFileError(KbError, PermissionError):
    """A file that the containment rule refuses; its message never depends on why."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


class FileTooLargeError(KbError, ValueError):
    """A contained file holds more bytes than the reader accepts."""


class NotRegularFileError(KbError, OSError):
    """A file named as data (training and evaluation files, a picture to search by) or kept in the knowledge base's
    own folder that is missing, unreadable or not a regular file."""


def read_named_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a file the user named as data, wherever it lies and through symlinks, but only a regular file
    (a FIFO or device given instead could block or never end) of at most ``max_bytes`` (``DATA_FILE_LIMIT``)."""
    try:
        return read_inside(Path(os.sep), Path(os.path.realpath(path)), max_bytes or DATA_FILE_LIMIT)
    except RefusedFileError:
        raise NotRegularFileError("not a readable regular file (missing, unreadable, a folder, a FIFO or a "
                                  "device)") from None


def read_own_file(path: Path, max_bytes: int) -> bytearray:
    """The bytes of a file the knowledge base keeps in its own folder (its settings, an index cache), where whoever
    can write to the folder could plant anything: only a regular file, its name not a symlink, opened without
    blocking, of at most ``max_bytes``, never more than its size when opened (a file still growing is refused, not
    read on). ``FileNotFoundError`` when there is none, ``NotRegularFileError`` when it is something else. Read into
    one buffer (no copy: an index cache may hold gigabytes)."""
    try:
        descriptor = os.open(path, _FILE_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as error:  # ELOOP: the name is a symlink
        raise NotRegularFileError(_NOT_OWN if error.errno == errno.ELOOP else error.strerror or str(error)) from None
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFileError(_NOT_OWN)
        if status.st_size > max_bytes:
            raise FileTooLargeError(_too_large(status.st_size, max_bytes))
        data = bytearray(status.st_size + 1)  # a byte more than its size: a file grown since fills it
        filled = 0
        with memoryview(data) as view:
            while filled < len(data) and (count := handle.readinto(view[filled:])):
                filled += count
    if filled > status.st_size:
        raise FileTooLargeError(f"file grew past its {status.st_size:,} bytes while it was read")
    del data[filled:]
    return data


def identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of what ``path`` names, or None where it cannot be had (gone, unreadable)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or lies under it (both absolute, normalised strings)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def descend(names: Sequence[str], start: int | None = None) -> int:
    """A descriptor, for listing, of the folder ``names`` below the open folder ``start`` (left open) or below ``/``,
    opened name by name without following a symlink (``OSError``, ELOOP or ENOTDIR, where one is). The folders on
    the way are opened for searching only, so one that can be passed but not listed is no obstacle."""
    descriptor = os.dup(start) if start is not None else os.open(os.sep, _TRAVERSE_FLAGS if names else
                                                                 _DIRECTORY_FLAGS)
    try:
        for index, name in enumerate(names):
            child = os.open(name, _DIRECTORY_FLAGS if index == len(names) - 1 else _TRAVERSE_FLAGS, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = child
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


def open_folder(root: Path) -> int:
    """A descriptor of the folder at the absolute path ``root``, opened name by name from ``/`` without following a
    symlink; ``RefusedFileError`` when one of them is a symlink (a folder replaced by a link, however briefly: a run
    must never walk or read where it leads), the ``OSError`` itself when it is missing or cannot be read. Walks and
    reads below go by descriptor from here, so a later swap cannot redirect them."""
    if not root.is_absolute() or ".." in root.parts:
        raise RefusedFileError()
    try:
        return descend(root.parts[1:])
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink (or a file) where a folder was
            raise RefusedFileError() from None
        raise  # missing, or not readable: said as it is


def open_inside(root: Path, path: Path, expected: tuple[int, int] | None = None, *,
                allow_outside: bool = False) -> int:
    """A read-only descriptor of ``path`` if the containment rule allows it; else ``RefusedFileError``.

    ``root`` must be the resolved source folder. ``expected`` is the (device, inode) the scan saw: a file replaced
    since then is refused. ``allow_outside`` lets a scanned symlink that the user allowed to leave the folder
    (``follow_symlinks_outside``) be read; the walk to it still follows no symlink.
    """
    real = os.path.realpath(path)
    if inside(real, str(root)):
        base, relative = str(root), os.path.relpath(real, root)
    elif allow_outside:
        base, relative = os.sep, real.lstrip(os.sep)
    else:
        raise RefusedFileError()
    parts = [part for part in relative.split(os.sep) if part not in ("", ".")]
    if not parts or ".." in parts:
        raise RefusedFileError()
    try:
        if base == os.sep:
            folder = descend(parts[:-1])
        else:
            source = open_folder(root)
            try:
                folder = descend(parts[:-1], source)
            finally:
                os.close(source)
    except OSError:
        raise RefusedFileError() from None
    try:
        checked = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISREG(checked.st_mode):
            raise RefusedFileError()
        descriptor = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
    except OSError:
        raise RefusedFileError() from None
    finally:
        os.close(folder)
    opened = os.fstat(descriptor)
    identity = (opened.st_dev, opened.st_ino)
    if not stat.S_ISREG(opened.st_mode) or identity != (checked.st_dev, checked.st_ino) or \
            (expected is not None and identity != expected):
        os.close(descriptor)
        raise RefusedFileError()
    return descriptor


def read_inside(root: Path, path: Path, max_bytes: int, expected: tuple[int, int] | None = None, *,
                allow_outside: bool = False) -> bytes:
    """The bytes of ``path`` under the containment rule (see ``open_inside``), at most ``max_bytes`` of them.

    The size is checked while reading, not only from ``fstat``: a file that grows past the limit is refused too.
    """
    descriptor = open_inside(root, path, expected, allow_outside=allow_outside)
    try:
        size = os.fstat(descriptor).st_size
        if size > max_bytes:
            raise FileTooLargeError(_too_large(size, max_bytes))
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                part = os.read(descriptor, _READ_CHUNK)
            except OSError as error:
                raise RefusedFileError() from error
            if not part:
                break
            total += len(part)
            if total > max_bytes:
                raise FileTooLargeError(_too_large(total, max_bytes))
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)


def _too_large(size: int, limit: int) -> str:
    return f"file is {size / 2**20:.1f} MB, over the {limit / 2**20:g} MB limit"
