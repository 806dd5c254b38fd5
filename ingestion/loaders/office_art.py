"""Office 97-2003 binary records, as PowerPoint keeps its slides and Office keeps its drawings (OfficeArt): an
8-byte header (version and instance, type, length) and a body, which a container fills with more records.

Read within a budget of headers: a hostile file can point many references into one large container, and each
walk of it would otherwise cost its whole size again.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import NamedTuple

from ingestion.loaders.base import Limits, LoadError

_HEADER = struct.Struct("<HHI")
_CONTAINER = 0xF  # the version of a record whose body is records
# Picture records (OfficeArtBlip*) whose body is an image file after one or two 16-byte identifiers and a tag byte,
# by type: the instance's low bit says whether there are two identifiers.
_BITMAPS = {0xF01D: "JPEG", 0xF01E: "PNG", 0xF01F: "DIB", 0xF029: "TIFF", 0xF02A: "JPEG"}
_METAFILES = {0xF01A: "EMF", 0xF01B: "WMF", 0xF01C: "PICT"}
_PROPERTY_TABLES = frozenset({0xF00B, 0xF122})  # a shape's properties (OfficeArtFOPT), and its further ones
_PICTURE, _DESCRIPTION = 0x0104, 0x0381  # shape properties: the picture it shows, its alt text
_MAX_ALT = 2000  # characters of alt text kept
_MAX_COMPLEX = 4 * _MAX_ALT  # bytes of a complex property's value kept (overlapping shapes each copied 20 MB)
_DIB_HEADERS = (12, 40, 52, 56, 64, 108, 124)  # the sizes of the bitmap headers Windows defines
_MASKS = {3: 12, 6: 16}  # a 40-byte-header bitmap's compressions whose colour masks follow its header: their size


class Exhausted(LoadError):
    """The file's records were walked more than its size allows (they point into each other again and again)."""


class Record(NamedTuple):
    """One record: its type, instance, whether its body is records, and where its body starts and ends."""

    kind: int
    instance: int
    container: bool
    start: int
    end: int


class Records:
    """The records of one stream. Every header read and every entry of a table counts against one budget: twice
    what the stream could hold, and a floor for small files."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.steps = len(data) // 4 + 100_000

    def spend(self, steps: int) -> None:
        """Count ``steps`` against the budget; ``Exhausted`` once it is spent."""
        self.steps -= steps
        if self.steps < 0:
            raise Exhausted("its records refer to each other more often than its size allows")

    def at(self, offset: int, end: int | None = None) -> Record | None:
        """The record whose header is at ``offset``, its body cut at ``end`` (the stream's, or its container's);
        None when no header fits there."""
        self.spend(1)
        end = len(self.data) if end is None else end
        if offset < 0 or offset + 8 > end:
            return None
        head, kind, length = _HEADER.unpack_from(self.data, offset)
        return Record(kind, head >> 4, head & 0xF == _CONTAINER, offset + 8, min(offset + 8 + length, end))

    def children(self, record: Record) -> Iterator[Record]:
        """The records in a container's body, in order."""
        if not record.container:
            return
        offset = record.start
        while (child := self.at(offset, record.end)) is not None:
            yield child
            offset = child.end

    def first(self, record: Record, kind: int) -> Record | None:
        """A container's first child of type ``kind``."""
        return next((child for child in self.children(record) if child.kind == kind), None)

    def body(self, record: Record) -> bytes:
        return self.data[record.start:record.end]


def shape_properties(records: Records, shape: Record) -> dict[int, int | bytes]:
    """The properties of a shape (an OfficeArtSpContainer), from all its property tables."""
    found: dict[int, int | bytes] = {}
    for child in records.children(shape):
        if child.kind in _PROPERTY_TABLES:
            found.update(_properties(records, child))
    return found


def shown_picture(found: dict[int, int | bytes]) -> tuple[int, str | None] | None:
    """The picture a shape with these properties shows (its place in the picture store, from 1) and its alt text;
    None for a shape showing none."""
    picture = found.get(_PICTURE)
    if not isinstance(picture, int) or picture < 1:
        return None
    alt = found.get(_DESCRIPTION)
    text = alt.decode("utf-16-le", "replace").split("\0", 1)[0][:_MAX_ALT] if isinstance(alt, bytes) else ""
    return picture, text.strip() or None


def stored_picture(records: Records, entry: Record, delay: Records | None) -> tuple[Records, Record] | str:
    """The picture record a picture store entry (OfficeArtFBSE) names: kept in the entry itself, after its 36
    bytes and its name, or in ``delay`` (a .ppt's Pictures stream) at the offset the entry gives; else why there
    is none."""
    if entry.end - entry.start < 36:
        return "its entry in the picture store is cut short"
    inside = entry.start + 36 + records.data[entry.start + 33]  # after the entry and its name
    if inside + 8 <= entry.end:
        found, holder = records.at(inside, entry.end), records
    elif delay is not None:
        found, holder = delay.at(struct.unpack_from("<I", records.data, entry.start + 28)[0]), delay
    else:
        found, holder = None, records
    return (holder, found) if found is not None else "its picture is missing from the file"


def _properties(records: Records, record: Record) -> dict[int, int | bytes]:
    """A property table (OfficeArtFOPT): property number to its value, or to its bytes for a complex property
    (kept after the table, in the order of the properties)."""
    data = records.data
    found: dict[int, int | bytes] = {}
    records.spend(record.instance)  # the instance is the number of properties (at most 4,095)
    complex_at = record.start + 6 * record.instance
    for offset in range(record.start, min(complex_at, record.end - 5), 6):
        identifier, value = struct.unpack_from("<HI", data, offset)
        if identifier & 0x8000:  # complex: ``value`` is the length of its bytes (kept to the first _MAX_COMPLEX)
            found[identifier & 0x3FFF] = data[complex_at:min(complex_at + value, complex_at + _MAX_COMPLEX,
                                                            record.end)]
            complex_at += value
        else:
            found[identifier & 0x3FFF] = value
    return found


class PictureFiles:
    """Image files read from picture records, each once (by stream and offset) however many shapes show it: at
    most ``max_bytes`` each and ``max_total_bytes`` together are held."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files: dict[tuple[int, int], tuple[bytes | None, str, str]] = {}
        self.held = 0

    def file(self, found: tuple[Records, Record] | str) -> tuple[bytes | None, str, str]:
        """The image file of a picture record (or the reason ``found`` gives there is none), its hash, and the
        reason when there is none."""
        if isinstance(found, str):
            return None, "", found
        records, record = found
        key = (id(records), record.start)
        if key not in self.files:
            self.files[key] = self._read(records, record)
        return self.files[key]

    def _read(self, records: Records, record: Record) -> tuple[bytes | None, str, str]:
        size = record.end - record.start
        if size > self.limits.max_bytes:
            return None, "", f"over {self.limits.max_bytes / 2**20:g} MB"
        if self.held + size > self.limits.max_total_bytes:
            return None, "", f"over {self.limits.max_total_bytes / 2**20:g} MB of pictures in the file"
        try:
            image, reason = picture_file(records, record)
        except struct.error:
            image, reason = None, "its picture record is cut short"
        if image is None:
            return None, "", reason
        self.held += len(image)
        return image, hashlib.sha256(image).hexdigest(), reason


def picture_file(records: Records, record: Record) -> tuple[bytes | None, str]:
    """The image file a picture record holds, with its format; None (and the reason) for a metafile or a record
    of no known picture type. A device-independent bitmap is given the file header that makes it a BMP file."""
    if record.kind in _METAFILES:
        return None, f"a {_METAFILES[record.kind]} metafile is not read"
    if record.kind not in _BITMAPS:
        return None, f"a picture record of type {record.kind:#x} is not read"
    data = records.data[record.start + 16 * (1 + (record.instance & 1)) + 1:record.end]
    if _BITMAPS[record.kind] != "DIB":
        return data, _BITMAPS[record.kind]
    return _bitmap_file(data), "BMP"


def _bitmap_file(dib: bytes) -> bytes:
    """A BMP file of a device-independent bitmap: the 14-byte file header, which says where its pixels start
    (after the bitmap's header, its colour masks and its palette)."""
    size = struct.unpack_from("<I", dib)[0] if len(dib) >= 4 else 0
    if size not in _DIB_HEADERS or len(dib) < max(size, 16):
        return dib  # not a bitmap (or one cut short): the image reader says so
    if size == 12:
        bits, colours, compression, entry = struct.unpack_from("<H", dib, 10)[0], 0, 0, 3
    else:
        bits, compression, colours = struct.unpack_from("<H", dib, 14)[0], *struct.unpack_from("<I12xI", dib, 16)
        entry = 4
    palette = (colours or 1 << bits) * entry if 0 < bits <= 8 else colours * entry
    masks = _MASKS.get(compression, 0) if size == 40 else 0
    pixels = 14 + size + masks + palette
    if pixels > 14 + len(dib):
        return dib  # its palette is longer than the picture: the image reader refuses it
    return b"BM" + struct.pack("<IHHI", 14 + len(dib), 0, 0, pixels) + dib
