"""Walking a source folder: regular files with their stat, and every oddity recorded with its reason."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kb.containment import REFUSED, RefusedFileError, descend, identity, inside, open_folder
from kb.errors import SourceUnavailableError
from kb.storage.models import MAX_PATH_BYTES, TIME_RANGE_NS
from kb.types import FailedFile

MAX_DEPTH = 256  # folders below the source, at most; deeper ones are failed with that reason, their documents kept


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
    mounts: list[Path] = field(default_factory=list)  # folders (not links) on another filesystem than their parent
    # Names not read because what they name is read under another: links inside the source, a file's other names.
    aliases: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)  # symlinks not followed, whatever the reason
    _text: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    def covers(self, path: str) -> bool:
        """True unless ``path`` could not be looked at: it lies in a folder that could not be listed, or is (or
        lies under) an entry that could not be stat'ed. Its absence from the files then proves nothing."""
        return path not in self._as_text("unchecked") and \
            not _below_any(path, self._as_text("unreadable_dirs", "unchecked"))

    def aliased(self, path: str) -> bool:
        """Whether ``path`` is (or lies under) a name the scan did not read because what it names is read under
        another (see ``aliases``)."""
        return path in self.aliases or _below_any(path, self._as_text("aliases"))

    def behind_link(self, path: str) -> bool:
        """Whether ``path`` is (or lies under) a symlink the scan did not follow."""
        return path in self.links or _below_any(path, self._as_text("links"))

    def in_empty_folder(self, path: str) -> bool:
        """``path`` lies in a folder (below the root too) that now holds nothing: the bare mount point of an
        unmounted share, more likely than every file deleted."""
        return _below_any(path, self._as_text("empty_dirs"))

    def _as_text(self, *names: str) -> frozenset[str]:
        """The paths of the lists ``names`` as one set of text, made once the walk is over (asked per missing
        document, so each question costs the path's depth, not the number of folders)."""
        if names not in self._text:
            self._text[names] = frozenset(str(path) for name in names for path in getattr(self, name))
        return self._text[names]


def _below_any(path: str, folders: frozenset[str]) -> bool:
    """Whether ``path`` lies below one of ``folders``, by looking its parents up."""
    parent = os.path.dirname(path)
    while parent not in folders:
        if parent == os.path.dirname(parent):
            return False
        parent = os.path.dirname(parent)
    return True


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


# A symlink to a file or folder of the source itself: its target is read under its own name, not twice (followed,
# a link to a folder took the folder's documents, and the record of a share mounted there, to the link's name).
IN_SOURCE = "symlink to a file or folder in the source folder: not followed (read under its own name)"


LINKED_TWICE = "symlink to a folder read through another link: not followed (read under that name)"


class _Refused(Exception):
    """A symlink the scan does not follow."""


class _InSource(Exception):
    """A symlink to a file or folder inside the source."""


@dataclass(frozen=True)
class _Folder:
    """A folder to list: ``path`` as reported (under the root, even through a symlink), and where it really is,
    as names to open one by one from the root (or from ``/``, for a link allowed to leave it), none a symlink."""

    path: Path
    names: tuple[str, ...]
    from_root: bool
    identity: tuple[int, int]

    def location(self, root: Path) -> Path:
        """Where the folder really is: ``root`` (or ``/``) and its names."""
        return (root if self.from_root else Path(os.sep)).joinpath(*self.names)


def _open(folder: _Folder, root_descriptor: int) -> int:
    """A descriptor of ``folder``, opened name by name without following a symlink; OSError when one of them is
    now a symlink or not the folder the scan saw (swapped meanwhile)."""
    descriptor = descend(folder.names, root_descriptor if folder.from_root else None)
    opened = os.fstat(descriptor)
    if (opened.st_dev, opened.st_ino) != folder.identity:
        os.close(descriptor)
        raise OSError(errno.ESTALE, "replaced during the scan")
    return descriptor


def _same_folder(path: Path, descriptor: int) -> bool:
    """Whether ``path`` still leads to the folder open as ``descriptor``."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(descriptor))
    except OSError:
        return False


def scan(root: Path, *, follow_symlinks_outside: bool = False, exclude: Path | None = None) -> ScanResult:
    """All regular files under ``root`` (its real path); hidden entries (names starting with '.') are left out, and
    so is the folder ``exclude`` (the knowledge base's own, where it lies inside a source: its database, indexes
    and logs are not documents, and they change at every run).

    Symlinks are followed only outside ``root``, and only if allowed, or to a hidden file or folder inside it (one to
    anything else inside it is skipped: its target is read under its own name), never into ``exclude``; loops,
    unreadable folders and files that vanish mid-scan are reported instead of raising. A symlink leading outside the
    folder, or to nothing, is reported with the containment rule's one message: the report never says what exists
    outside. A file with several names (hard links, links from outside) is read
    once, under the first of them by path; the others are skipped, naming it.
    Folders are listed by descriptor, opened from the root's without following a symlink: a root or a folder
    swapped for a link during the scan is never walked (``SourceUnavailableError`` for the root).
    """
    try:
        root_descriptor = open_folder(root)
    except RefusedFileError as error:
        raise SourceUnavailableError(f"{root} cannot be opened without following a symlink (it, or a folder above "
                                     "it, was replaced by one); nothing was read or removed") from error
    except OSError as error:  # not readable: reported as any folder that cannot be listed, its documents kept
        unreadable = ScanResult()
        unreadable.failed.append(FailedFile(path=str(root), reason=f"folder could not be read: {error.strerror}"))
        unreadable.unreadable_dirs.append(root)
        return unreadable
    try:
        excluded = (identity(exclude), os.path.realpath(exclude)) if exclude is not None else None
        return _Walk(root, root_descriptor, follow_symlinks_outside, excluded).run()
    finally:
        os.close(root_descriptor)


class _Walk:
    """One scan: the root's descriptor, the folders still to list, and what was found."""

    def __init__(self, root: Path, root_descriptor: int, follow_symlinks_outside: bool,
                 excluded: tuple[tuple[int, int], str] | None) -> None:
        self.root, self.root_descriptor = root, root_descriptor
        self.follow_symlinks_outside = follow_symlinks_outside
        self.excluded, self.excluded_path = excluded if excluded is not None else (None, None)
        opened = os.fstat(root_descriptor)
        self.visited = {(opened.st_dev, opened.st_ino)}
        self.pending = [_Folder(root, (), True, (opened.st_dev, opened.st_ino))]
        self.named_twice: set[tuple[int, int]] = set()  # files that may have another name here (hard links, links)
        self.result = ScanResult()

    def run(self) -> ScanResult:
        while self.pending:
            folder = self.pending.pop()
            try:
                descriptor = _open(folder, self.root_descriptor)
            except OSError as error:
                self._unreadable(folder.path, error)
                continue
            try:
                self._list(folder, descriptor)
            finally:
                os.close(descriptor)
        self.result.files.sort(key=lambda f: f.relpath)
        self._read_once()
        return self.result

    def _read_once(self) -> None:
        """Keeps one name of each file found under several (the first by path), skipping the others: 100 links
        to one file were 100 documents, each loaded and embedded."""
        first: dict[tuple[int, int], str] = {}
        kept = []
        for file in self.result.files:
            if file.identity in self.named_twice and first.setdefault(file.identity, file.relpath) != file.relpath:
                self.result.aliases.add(str(file.path))
                self.result.skipped.append(FailedFile(path=str(file.path), reason=f"the same file as "
                                                      f"{first[file.identity]}: read once, under that name"))
            else:
                kept.append(file)
        self.result.files = kept

    def _unreadable(self, directory: Path, error: OSError) -> None:
        self.result.failed.append(FailedFile(path=str(directory), reason=f"folder could not be read: {error.strerror}"))
        self.result.unreadable_dirs.append(directory)

    def _list(self, folder: _Folder, descriptor: int) -> None:
        """Record the entries of ``folder``, open as ``descriptor``: its files found, its folders to list."""
        result, directory = self.result, folder.path
        try:
            entries = sorted(os.scandir(descriptor), key=lambda e: e.name)
        except OSError as error:
            self._unreadable(directory, error)
            return
        if all(hidden(entry.name) for entry in entries):
            result.empty_dirs.append(directory)
        for entry in entries:
            if hidden(entry.name):
                continue
            path = directory / entry.name
            if not valid_name(entry.name):
                result.failed.append(FailedFile(path=repr(str(path))[1:-1], reason="file name is not valid UTF-8"))
                continue
            names, from_root = (*folder.names, entry.name), folder.from_root
            try:
                if entry.is_symlink():
                    # The target is checked where it really is, and never followed further: a link re-pointed
                    # meanwhile shows up as a link and is refused like one leading outside. It is looked up by
                    # path, so the folder must still be the one listed: else its links were read elsewhere.
                    target = os.path.realpath(folder.location(self.root) / entry.name)
                    if not _same_folder(folder.location(self.root), descriptor):
                        self._unreadable(directory, OSError(errno.ESTALE, "replaced during the scan"))
                        return
                    if self.excluded_path is not None and inside(target, self.excluded_path):
                        raise _Refused
                    if inside(target, str(self.root)):
                        relative = Path(target).relative_to(self.root).parts
                        if not any(map(hidden, relative)):  # walked, and read, under its own name
                            raise _InSource if os.path.lexists(target) else _Refused
                        names, from_root = relative, True  # a hidden one is read only through the link
                    elif self.follow_symlinks_outside:
                        names, from_root = Path(target).parts[1:], False
                    else:
                        raise _Refused
                    info = os.stat(target, follow_symlinks=False)
                    if stat.S_ISLNK(info.st_mode):
                        raise _Refused
                else:
                    info = entry.stat(follow_symlinks=False)  # through the folder's descriptor
            except _InSource:
                result.aliases.add(str(path))
                result.links.add(str(path))
                result.skipped.append(FailedFile(path=str(path), reason=IN_SOURCE))
                continue
            except (_Refused, FileNotFoundError) as error:
                if entry.is_symlink() or isinstance(error, _Refused):
                    result.links.add(str(path))
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
                if key == self.excluded:  # not entered, and not reported
                    continue
                if len(names) > MAX_DEPTH:  # each folder is opened name by name from the root: bounded work
                    result.failed.append(FailedFile(path=str(path), reason=f"folder more than {MAX_DEPTH} levels "
                                                                           "deep (not read)"))
                    result.unreadable_dirs.append(path)
                    continue
                if key in self.visited and entry.is_symlink():  # a second link to a folder read through a first
                    result.aliases.add(str(path))
                    result.links.add(str(path))
                    result.skipped.append(FailedFile(path=str(path), reason=LINKED_TWICE))
                    continue
                if key in self.visited:
                    result.failed.append(FailedFile(path=str(path), reason="symlink loop (folder already visited)"))
                    continue
                self.visited.add(key)
                if info.st_dev != folder.identity[0] and not entry.is_symlink():  # another filesystem mounted here
                    result.mounts.append(path)
                self.pending.append(_Folder(path, names, from_root, key))
            elif stat.S_ISREG(info.st_mode):
                if len(str(path).encode("utf-8")) > MAX_PATH_BYTES:  # refused here, not by the database's index
                    result.failed.append(FailedFile(path=str(path), reason=f"path longer than {MAX_PATH_BYTES:,} "
                                                                           "bytes (UTF-8), more than is stored"))
                    result.unchecked.append(path)  # a document stored under it before is kept, not removed
                    continue
                if info.st_nlink > 1 or entry.is_symlink():
                    self.named_twice.add((info.st_dev, info.st_ino))
                mtime_ns = min(max(info.st_mtime_ns, TIME_RANGE_NS[0]), TIME_RANGE_NS[1])
                result.files.append(ScannedFile(path=path, relpath=str(path.relative_to(self.root)),
                                                size=info.st_size, mtime_ns=mtime_ns,
                                                identity=(info.st_dev, info.st_ino)))
            else:
                result.skipped.append(FailedFile(path=str(path), reason="not a regular file"))
