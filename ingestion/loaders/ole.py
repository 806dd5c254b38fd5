"""OLE compound files, the container of Office 97-2003 documents and workbooks: opened from memory only, and the
title of their summary information."""

from __future__ import annotations

import io
import struct

import olefile

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import LoadError
from ingestion.loaders.images import describe_error

_SUMMARY = "\x05SummaryInformation"
_MAX_SUMMARY = 2**20  # bytes of it read: a title is near its start
_CODEPAGE, _TITLE = 1, 2  # property identifiers
_VT_I2, _VT_LPSTR, _VT_LPWSTR = 2, 30, 31  # property types


class _Package(olefile.OleFileIO):
    """olefile's reader, which checks that no two streams begin at one sector against sets of the sectors seen, not
    lists: opening a file took the square of its streams (18,000: 1.6 s; 100,000: 53 s)."""

    def _check_duplicate_stream(self, first_sect: int, minifat: bool = False) -> None:
        if not minifat and first_sect in (olefile.DIFSECT, olefile.FATSECT, olefile.ENDOFCHAIN, olefile.FREESECT):
            return  # not a stream's sector
        seen: set[int] = self.__dict__.setdefault("_first_sectors_mini" if minifat else "_first_sectors", set())
        if first_sect in seen:
            self._raise_defect(olefile.DEFECT_INCORRECT, "Stream referenced twice")
        seen.add(first_sect)


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
    title = value.decode("utf-16-le" if kind == _VT_LPWSTR else encoding.windows_codec(codepage) or "cp1252", "replace")
    return title.split("\x00", 1)[0].strip() or None
