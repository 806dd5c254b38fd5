"""Inline pictures of a Word 97-2003 document, as its Data stream keeps them (a picture header (PICF), then an
OfficeArt shape with its alt text and the picture store entries that hold the image, see ``office_art``), and the
span of the paragraph each stands in."""

from __future__ import annotations

import itertools
import struct

from ingestion.loaders.base import TextCursor, clean_text
from ingestion.loaders.images import EmbeddedImages, is_figure_caption, picture_span
from ingestion.loaders.office_art import (
    Exhausted,
    PictureFiles,
    Record,
    Records,
    shape_properties,
    shown_picture,
    stored_picture,
)

_HEADER = 0x44  # the size of a picture header
_SHAPE, _SHAPE_FILE = 0x64, 0x66  # its mapping modes: a shape follows (after a picture's name, for the second)
_SHAPE_RECORD, _STORED_PICTURE = 0xF004, 0xF007
_MAX_ENTRIES = 64  # picture store entries looked at after one picture's shape


def inline_picture(data: Records, location: int) -> tuple[tuple[Records, Record] | str, str | None] | None:
    """The picture record of the inline picture whose header is at ``location`` in the Data stream and its alt
    text; or why there is none (a metafile of Word 6 or 95, a header that names nothing); None for an inline
    shape that shows no picture (a drawn shape)."""
    raw = data.data
    if location + _HEADER > len(raw):
        return "its picture is missing from the Data stream", None
    size, header, mode = struct.unpack_from("<IHH", raw, location)
    if header != _HEADER or mode not in (_SHAPE, _SHAPE_FILE):
        return "a metafile picture (as Word 6 and 95 kept pictures) is not read", None
    end = min(location + size, len(raw))
    name = raw[location + header:location + header + 1] if mode == _SHAPE_FILE else b""  # the name's length
    at = location + header + (1 + name[0] if name else 0)
    shape = data.at(at, end)
    if shape is None or shape.kind != _SHAPE_RECORD:
        return "its picture header holds no picture", None
    if (shown := shown_picture(shape_properties(data, shape))) is None:
        return None
    index, alt = shown
    entries: list[Record] = []
    offset = shape.end
    while len(entries) < min(index, _MAX_ENTRIES) and (entry := data.at(offset, end)) is not None:
        if entry.kind == _STORED_PICTURE:
            entries.append(entry)
        offset = entry.end
    if len(entries) < index:
        return "its picture is missing from the Data stream", alt
    return stored_picture(data, entries[index - 1], None), alt


def placed_pictures(blocks: list[str], sentinel: str, located: list[int], data: bytes,
                    images: EmbeddedImages) -> str:
    """The document's text, its ``blocks`` (paragraphs and tables) a blank line apart, each ``sentinel`` in them
    left out: it stands where an inline picture is, whose header is at the next of ``located`` in the Data stream
    ``data``. Each picture is kept with its alt text, the span of its block (through its caption), and its caption.
    A picture header many characters name is read once."""
    texts = [clean_text(block.replace(sentinel, "")) for block in blocks]
    text = "\n\n".join(block for block in texts if block)
    cursor = TextCursor(text)
    spans = [cursor.find(block) if block else None for block in texts] if located else []
    records, files = Records(data), PictureFiles(images.limits)
    read: dict[int, tuple[tuple[Records, Record] | str, str | None] | None] = {}
    pictures = iter(located)
    number = 0
    before: tuple[int, int] | None = None  # the span of the last block with text before the current one
    for index, block in enumerate(blocks if located else []):
        if count := block.count(sentinel):
            following = texts[index + 1] if index + 1 < len(texts) else ""
            caption = following if is_figure_caption(following) else None
            start, end = picture_span(spans[index], spans[index + 1] if caption else None, before)
            for location in itertools.islice(pictures, count):
                if images.full:
                    images.beyond_limits(1)
                    continue
                if location not in read:
                    try:
                        read[location] = inline_picture(records, location)
                    except Exhausted as error:
                        read[location] = str(error), None
                if (picture := read[location]) is None:  # a drawn shape
                    continue
                number += 1
                found, alt = picture
                image, sha256, reason = files.file(found)
                if image is None:
                    images.skip(f"picture {number}", reason)
                else:
                    images.add_bytes(image, f"picture {number}", sha256=sha256, start=start, end=end, alt=alt,
                                     caption=caption)
        before = spans[index] or before
    return text
