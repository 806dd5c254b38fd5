"""Walking a source folder: regular files with their stat, and every oddity recorded with its reason."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kb.types import FailedFile


@dataclass(frozen=True)
class ScannedFile:
    """A file found under the source root (``path`` is under the root even when it is a symlink)."""

    path: Path
    relpath: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    files: list[ScannedFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    skipped: list[FailedFile] = field(default_factory=list)
    unreadable_dirs: list[Path] = field(default_factory=list)

    def covers(self, path: str) -> bool:
        """True unless ``path`` lies in a folder that could not be listed (its absence proves nothing)."""
        return not any(path.startswith(str(d) + os.sep) for d in self.unreadable_dirs)


def _valid_name(name: str) -> bool:
    """False for names with bytes that are not UTF-8 (Python keeps them as surrogates no database can store)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def scan(root: Path, *, follow_symlinks_outside: bool = False) -> ScanResult:
    """All regular files under ``root``; hidden entries (names starting with '.') are left out.

    Symlinks are followed while they stay inside ``root`` (or anywhere, if allowed); loops, broken links,
    unreadable folders and files that vanish mid-scan are reported instead of raising.
    """
    root = root.resolve()
    root_str = str(root)
    result = ScanResult()
    root_stat = root.stat()
    visited = {(root_stat.st_dev, root_stat.st_ino)}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as error:
            result.failed.append(FailedFile(path=str(directory), reason=f"folder could not be read: {error.strerror}"))
            result.unreadable_dirs.append(directory)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if not _valid_name(entry.name):
                result.failed.append(FailedFile(path=repr(entry.path)[1:-1], reason="file name is not valid UTF-8"))
                continue
            try:
                if entry.is_symlink():
                    target = os.path.realpath(path, strict=True)
                    if not follow_symlinks_outside and not _inside(target, root_str):
                        result.skipped.append(FailedFile(path=str(path), reason="symlink points outside the folder"))
                        continue
                info = path.stat()
            except FileNotFoundError:
                reason = "broken symlink" if os.path.islink(path) else "vanished during the scan"
                result.failed.append(FailedFile(path=str(path), reason=reason))
                continue
            except OSError as error:
                reason = "symlink loop" if error.errno == errno.ELOOP else f"cannot stat: {error.strerror}"
                result.failed.append(FailedFile(path=str(path), reason=reason))
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in visited:
                    result.failed.append(FailedFile(path=str(path), reason="symlink loop (folder already visited)"))
                    continue
                visited.add(key)
                pending.append(path)
            elif stat.S_ISREG(info.st_mode):
                relpath = str(path.relative_to(root))
                result.files.append(ScannedFile(path=path, relpath=relpath, size=info.st_size,
                                                mtime_ns=info.st_mtime_ns))
            else:
                result.skipped.append(FailedFile(path=str(path), reason="not a regular file"))
    result.files.sort(key=lambda f: f.relpath)
    return result
