"""OLE compound files, the container of Office 97-2003 documents and workbooks: opened from memory only, and the
title of their summary information."""

from __future__ import annotations

import io

import olefile

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import LoadError
from ingestion.loaders.images import describe_error

_SUMMARY = "\x05SummaryInformation"


def open_package(data: bytes, kind: str) -> olefile.OleFileIO:
    """The compound file in ``data``; a broken one is refused as a corrupt ``kind``. Always given to olefile as a
    file object: olefile takes bytes shorter than 1,536 for the name of a file to open, which would read the file
    a short hostile one names."""
    try:
        return olefile.OleFileIO(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception as error:  # olefile reports a broken file with many exception types
        raise LoadError(f"corrupt {kind}: {describe_error(error)}") from error


def summary_title(package: olefile.OleFileIO) -> str | None:
    """The title of the summary information, in the code page it declares; None when there is none or it is
    unreadable (a title is never a reason to lose a file)."""
    if not package.exists(_SUMMARY):
        return None
    try:
        metadata = package.get_metadata()
    except MemoryError:
        raise
    except Exception:
        return None
    title = metadata.title
    if isinstance(title, bytes):
        codepage = metadata.codepage & 0xFFFF if isinstance(metadata.codepage, int) else 1252  # stored signed
        title = title.decode(encoding.windows_codec(codepage) or "cp1252", "replace")
    return (title.rstrip("\x00") or None) if isinstance(title, str) else None
