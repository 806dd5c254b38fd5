"""Walking a source folder: regular files with their stat, and every oddity recorded with its reason."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kb.containment import REFUSED, inside
from kb.types import FailedFile


@dataclass(frozen=True)
class ScannedFile:
    """A file found under the source root (``path`` is under the root even when it is a symlink).

    ``identity`` is the (device, inode) the scan saw: the read refuses a file replaced since.
    """

    path: Path
    relpath: str
    size: int
    mtime_ns: int
    identity: tuple[int, int]


@dataclass
class ScanResult:
    files: list[ScannedFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    skipped: list[FailedFile] = field(default_factory=list)
    unreadable_dirs: list[Path] = field(default_factory=list)
    unchecked: list[Path] = field(default_factory=list)  # entries listed but not stat'ed: present, state unknown
    empty_dirs: list[Path] = field(default_factory=list)  # folders holding nothing the scan looks at

    def covers(self, path: str) -> bool:
        """True unless ``path`` could not be looked at: it lies in a folder that could not be listed, or is (or
        lies under) an entry that could not be stat'ed. Its absence from the files then proves nothing."""
        return not any(path.startswith(str(d) + os.sep) for d in self.unreadable_dirs) and \
            not any(path == str(entry) or path.startswith(str(entry) + os.sep) for entry in self.unchecked)

    def in_empty_folder(self, path: str) -> bool:
        """``path`` lies in a folder (below the root too) that now holds nothing: the bare mount point of an
        unmounted share, more likely than every file deleted."""
        return any(path.startswith(str(d) + os.sep) for d in self.empty_dirs)


def hidden(name: str) -> bool:
    """Entries the scan leaves out: names starting with '.'."""
    return name.startswith(".")


def valid_name(name: str) -> bool:
    """False for names with bytes that are not UTF-8 (Python keeps them as surrogates no database can store)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _identity(folder: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``folder``, or None where it cannot be had."""
    try:
        info = folder.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


class _Refused(Exception):
    """A symlink the scan does not follow."""


def scan(root: Path, *, follow_symlinks_outside: bool = False, exclude: Path | None = None) -> ScanResult:
    """All regular files under ``root``; hidden entries (names starting with '.') are left out, and so is the
    folder ``exclude`` (the knowledge base's own, where it lies inside a source: its database, indexes and logs
    are not documents, and they change at every run).

    Symlinks are followed while they stay inside ``root`` (or anywhere, if allowed); loops, unreadable folders
    and files that vanish mid-scan are reported instead of raising. A symlink leading outside the folder, or to
    nothing, is reported with the containment rule's one message: the report never says what exists outside.
    """
    root = root.resolve()
    root_str = str(root)
    result = ScanResult()
    root_stat = root.stat()
    visited = {(root_stat.st_dev, root_stat.st_ino)}
    excluded = _identity(exclude) if exclude is not None else None
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as error:
            result.failed.append(FailedFile(path=str(directory), reason=f"folder could not be read: {error.strerror}"))
            result.unreadable_dirs.append(directory)
            continue
        if all(hidden(entry.name) for entry in entries):
            result.empty_dirs.append(directory)
        for entry in entries:
            if hidden(entry.name):
                continue
            path = Path(entry.path)
            if not valid_name(entry.name):
                result.failed.append(FailedFile(path=repr(entry.path)[1:-1], reason="file name is not valid UTF-8"))
                continue
            try:
                if entry.is_symlink():
                    # The target is checked where it really is, and never followed further: a link re-pointed
                    # meanwhile shows up as a link and is refused like one leading outside.
                    target = os.path.realpath(path)
                    if not follow_symlinks_outside and not inside(target, root_str):
                        raise _Refused
                    info = os.stat(target, follow_symlinks=False)
                    if stat.S_ISLNK(info.st_mode):
                        raise _Refused
                else:
                    info = entry.stat(follow_symlinks=False)
            except (_Refused, FileNotFoundError) as error:
                if entry.is_symlink() or isinstance(error, _Refused):
                    result.skipped.append(FailedFile(path=str(path), reason=f"symlink: {REFUSED}"))
                else:
                    result.failed.append(FailedFile(path=str(path), reason="vanished during the scan"))
                continue
            except OSError as error:  # a permission, a dead mount, an I/O error: not a deletion
                result.failed.append(FailedFile(path=str(path), reason=f"cannot stat: {error.strerror}"))
                result.unchecked.append(path)
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key == excluded:  # not entered, and not reported
                    continue
                if key in visited:
                    result.failed.append(FailedFile(path=str(path), reason="symlink loop (folder already visited)"))
                    continue
                visited.add(key)
                pending.append(path)
            elif stat.S_ISREG(info.st_mode):
                relpath = str(path.relative_to(root))
                result.files.append(ScannedFile(path=path, relpath=relpath, size=info.st_size,
                                                mtime_ns=info.st_mtime_ns, identity=(info.st_dev, info.st_ino)))
            else:
                result.skipped.append(FailedFile(path=str(path), reason="not a regular file"))
    result.files.sort(key=lambda f: f.relpath)
    return result
