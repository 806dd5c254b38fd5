"""OLE compound files, the container of Office 97-2003 documents and workbooks: opened from memory only, and the
title of their summary information."""

from __future__ import annotations

import array
import io
import struct
from typing import Any

import olefile
from olefile.olefile import OleDirectoryEntry, OleFileError, OleStream

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import LoadError
from ingestion.loaders.images import describe_error

_SUMMARY = "\x05SummaryInformation"
_MAX_SUMMARY = 2**20  # bytes of it read: a title is near its start
_CODEPAGE, _TITLE = 1, 2  # property identifiers
_VT_I2, _VT_LPSTR, _VT_LPWSTR = 2, 30, 31  # property types
_VISIT, _PLACE, _OPEN, _SORT = range(4)  # the steps of walking a storage's tree of entries


class _Package(olefile.OleFileIO):
    """olefile's reader, bounded where a hostile file made it slow or large: it checked that no two streams begin
    at one sector against lists of the sectors seen (opening took the square of its streams: 100,000 took 53 s);
    it grew the FAT by copying it once a sector, and took as many FAT sectors as the header declared (a 3 KB file
    whose DIFAT names itself took minutes); it read a stream as long as declared, through a FAT chain looping on
    itself (an 8 KB file declaring a 300 MB stream took 798 MB); it found a stream by comparing every name of its
    storage (a message of 30,000 streams, 15 lookups an attachment, took 64 s); and it walked the directory
    tree recursively (1,500 entries chained as right siblings raised a RecursionError)."""

    def _check_duplicate_stream(self, first_sect: int, minifat: bool = False) -> None:
        if not minifat and first_sect in (olefile.DIFSECT, olefile.FATSECT, olefile.ENDOFCHAIN, olefile.FREESECT):
            return  # not a stream's sector
        seen: set[int] = self.__dict__.setdefault("_first_sectors_mini" if minifat else "_first_sectors", set())
        if first_sect in seen:
            self._raise_defect(olefile.DEFECT_INCORRECT, "Stream referenced twice")
        seen.add(first_sect)

    def loadfat(self, header: bytes) -> None:
        if self.num_difat_sectors and self.num_fat_sectors > self.nb_sect:  # the count drives the DIFAT's loop
            raise OleFileError(f"the header declares {self.num_fat_sectors:,} FAT sectors in a file of "
                               f"{self.nb_sect:,} sectors")
        super().loadfat(header)

    def loadfat_sect(self, sect: bytes | array.array) -> int | None:
        """olefile's, the FAT extended in place."""
        found = None
        for found in sect if isinstance(sect, array.array) else self.sect2array(sect):
            found &= 0xFFFFFFFF
            if found in (olefile.ENDOFCHAIN, olefile.FREESECT):
                break
            self.fat.extend(self.sect2array(self.getsect(found)))
        return found

    def loadminifat(self) -> None:
        """olefile's, reading no more of the mini FAT than the file can hold, whatever the header declares (the
        table is then kept only as far as the mini stream's entries need)."""
        self.num_mini_fat_sectors = min(self.num_mini_fat_sectors, self.nb_sect)
        super().loadminifat()

    def _open(self, start: int, size: int = olefile.UNKNOWN_SIZE, force_FAT: bool = False) -> OleStream:
        """olefile's, a stream read no further than the file's size, whatever it declares (a stream cut short by
        a partial download is read as far as it goes, as olefile reads it)."""
        return super()._open(start, size if size == olefile.UNKNOWN_SIZE else min(size, self._filesize), force_FAT)

    def loaddirectory(self, sect: int) -> None:
        """olefile's, the storages' trees of entries walked in olefile's order (``append_kids``: the left
        subtree, the entry, the right subtree, then the entry's own storage) with a stack of its own. The root is
        marked as placed, so that an entry naming it cannot make the tree a cycle."""
        self.directory_fp = self._open(sect, force_FAT=True)
        self.direntries = [None] * (self.directory_fp.size // 128)
        self.root = self._load_direntry(0)
        self.root.used = True
        pending: list[tuple[int, OleDirectoryEntry, Any]] = [(_SORT, self.root, None), (_VISIT, self.root,
                                                                                       self.root.sid_child)]
        while pending:
            step, storage, item = pending.pop()
            if step == _VISIT and (kid := self._unplaced(item)) is not None:
                kid.used = True
                pending += [(_PLACE, storage, kid), (_VISIT, storage, kid.sid_left)]
            elif step == _PLACE:
                if item.name.lower() in storage.kids_dict:
                    self._raise_defect(olefile.DEFECT_INCORRECT, "Duplicate filename in OLE storage")
                storage.kids.append(item)
                storage.kids_dict[item.name.lower()] = item
                pending += [(_OPEN, item, None), (_VISIT, storage, item.sid_right)]
            elif step == _OPEN and storage.sid_child != olefile.NOSTREAM:
                pending += [(_SORT, storage, None), (_VISIT, storage, storage.sid_child)]
            elif step == _SORT:
                storage.kids.sort()

    def _unplaced(self, sid: int) -> OleDirectoryEntry | None:
        """The entry ``sid`` names, unless there is none (or it is out of range) or it is placed already."""
        if sid == olefile.NOSTREAM:
            return None
        if not 0 <= sid < len(self.direntries):
            self._raise_defect(olefile.DEFECT_INCORRECT, "OLE DirEntry index out of range")
            return None
        if (entry := self._load_direntry(sid)).used:
            self._raise_defect(olefile.DEFECT_INCORRECT, "OLE Entry referenced more than once")
            return None
        return entry

    def listdir(self, streams: bool = True, storages: bool = False) -> list[list[str]]:
        """olefile's, walked with a stack of its own: every stream (and storage) as its path of names."""
        found, pending = [], [([], kid) for kid in reversed(self.root.kids)]
        while pending:
            path, entry = pending.pop()
            if entry.entry_type == olefile.STGTY_STORAGE:
                if storages:
                    found.append([*path, entry.name])
                pending.extend(([*path, entry.name], kid) for kid in reversed(entry.kids))
            elif entry.entry_type == olefile.STGTY_STREAM and streams:
                found.append([*path, entry.name])
        return found

    def _find(self, filename: str | list[str]) -> int:
        """The entry of a path of names, each looked up case-insensitively in its storage's names (the first of
        those that differ only in case, as olefile's)."""
        node = self.root
        named: dict[int, dict[str, OleDirectoryEntry]] = self.__dict__.setdefault("_named", {})
        for name in filename.split("/") if isinstance(filename, str) else filename:
            if node.sid not in named:
                named[node.sid] = {}
                for kid in node.kids:
                    named[node.sid].setdefault(kid.name.lower(), kid)
            node = named[node.sid].get(name.lower())
            if node is None:
                raise OSError("file not found")
        return node.sid


def open_package(data: bytes, kind: str) -> olefile.OleFileIO:
    """The compound file in ``data``; a broken one is refused as a corrupt ``kind``. Always given to olefile as a
    file object: olefile takes bytes shorter than 1,536 for the name of a file to open, which would read the file
    a short hostile one names."""
    try:
        return _Package(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception as error:  # olefile reports a broken file with many exception types
        raise LoadError(f"corrupt {kind}: {describe_error(error)}") from error


def summary_title(package: olefile.OleFileIO) -> str | None:
    """The title of the summary information, in the code page it declares; None when there is none or it cannot be
    read (a title is never a reason to lose a file). Read by a parser of its own: olefile's parses every property,
    and a vector of a type it does not know (a count of 4 billion, each element of no size) never ends."""
    try:
        if not package.exists(_SUMMARY):
            return None
        return _title(package.openstream(_SUMMARY).read()[:_MAX_SUMMARY])
    except MemoryError:
        raise
    except Exception:
        return None


def _title(data: bytes) -> str | None:
    """Property 2 (the title) of the property set's first section, in the code page of property 1."""
    try:
        if struct.unpack_from("<I", data, 24)[0] < 1:  # no section
            return None
        section = struct.unpack_from("<I", data, 44)[0]  # after the section's 16-byte format identifier
        count = min(struct.unpack_from("<I", data, section + 4)[0], (len(data) - section) // 8)
        found = {}
        for index in range(count):
            identifier, at = struct.unpack_from("<II", data, section + 8 + 8 * index)
            if identifier in (_CODEPAGE, _TITLE):
                found[identifier] = section + at
        if _TITLE not in found:
            return None
        codepage = 1252
        if _CODEPAGE in found and struct.unpack_from("<H", data, found[_CODEPAGE])[0] == _VT_I2:
            codepage = struct.unpack_from("<H", data, found[_CODEPAGE] + 4)[0]
        kind, length = struct.unpack_from("<HxxI", data, found[_TITLE])
        value = data[found[_TITLE] + 8:found[_TITLE] + 8 + (2 * length if kind == _VT_LPWSTR else length)]
    except struct.error:
        return None
    if kind not in (_VT_LPSTR, _VT_LPWSTR):
        return None
    title = value.decode("utf-16-le", "replace") if kind == _VT_LPWSTR else encoding.windows_text(value, codepage)
    return title.split("\x00", 1)[0].strip() or None
