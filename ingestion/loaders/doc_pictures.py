"""Pictures of a Word 97-2003 document and the span of the paragraph each stands in.

An inline picture is a character (0x01) whose properties say where its picture is in the Data stream: a picture
header (PICF), then an OfficeArt shape with its alt text and the picture store entries that hold the image (see
``office_art``). A floating picture is a shape of the main document's drawing layer (kept in the table stream),
anchored at a character (0x08) by the PlcSpaMom; its image is in the layer's picture store, whose entries say where
in the WordDocument stream it is.
"""

from __future__ import annotations

import bisect
import itertools
import struct

from ingestion.loaders.base import clean_text
from ingestion.loaders.doc_properties import unsigned
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
_DRAWING_GROUP, _PICTURE_STORE, _DRAWING, _GROUP = 0xF000, 0xF001, 0xF002, 0xF003
_SHAPE_RECORD, _SHAPE_ATOM, _STORED_PICTURE = 0xF004, 0xF00A, 0xF007
_MAX_ENTRIES = 64  # picture store entries looked at after one picture's shape
_MAX_DEPTH = 64  # groups within groups in the drawing layer
_ANCHOR = 26  # the size of an anchor (SPA): the shape's id, its place on the page, its flags
_MAIN = 0  # the drawing layer's label for the main document's drawing (1: the headers')

Key = tuple[bool, int]  # a picture: floating (by its shape's id) or inline (by where it is in the Data stream)
Found = tuple[tuple[Records, Record] | str, str | None]  # its picture record, or why there is none; its alt text


class DocPictures:
    """A document's pictures, each read once by its key: inline ones from the Data stream, floating ones from
    the drawing layer (read when a floating one is first asked for)."""

    def __init__(self, data: bytes, layer: bytes, word: bytes) -> None:
        self.data = Records(data)
        self.layer = Records(layer)
        self.delay = Records(word)  # where the drawing layer's picture store keeps its images
        self.shapes: dict[int, tuple[int, str | None]] | None = None  # the pictures' shapes: id to (store, alt)
        self.store: list[Record] = []
        self.read: dict[Key, Found | None] = {}

    def picture(self, key: Key) -> Found | None:
        """The picture ``key`` names, or why there is none; None for a shape that shows no picture."""
        if key not in self.read:
            floating, number = key
            try:
                self.read[key] = self._floating(number) if floating else inline_picture(self.data, number)
            except Exhausted as error:
                self.read[key] = str(error), None
        return self.read[key]

    def _floating(self, shape: int) -> Found | None:
        if self.shapes is None:
            self.shapes = {}
            self._layer(self.shapes)
        if shape not in self.shapes:
            return None
        index, alt = self.shapes[shape]
        if not 1 <= index <= len(self.store):
            return "its picture is missing from the drawing layer's picture store", alt
        return stored_picture(self.layer, self.store[index - 1], self.delay), alt

    def _layer(self, shapes: dict[int, tuple[int, str | None]]) -> None:
        """The picture store, then the shapes of the main document's drawing, each after its one-byte label."""
        group = self.layer.at(0)
        if group is None or group.kind != _DRAWING_GROUP:
            return
        store = self.layer.first(group, _PICTURE_STORE)
        self.store = [] if store is None else [
            child for child in self.layer.children(store) if child.kind == _STORED_PICTURE]
        offset = group.end
        while (drawing := self.layer.at(offset + 1)) is not None:
            if self.layer.data[offset] == _MAIN and drawing.kind == _DRAWING:
                self._shapes(drawing, 0, shapes)
            offset = drawing.end

    def _shapes(self, container: Record, depth: int, shapes: dict[int, tuple[int, str | None]]) -> None:
        """The pictures' shapes in a drawing or group (a group's where the group is), by their ids."""
        for child in self.layer.children(container) if depth <= _MAX_DEPTH else ():
            if child.kind == _SHAPE_RECORD:
                atom = self.layer.first(child, _SHAPE_ATOM)
                shown = shown_picture(shape_properties(self.layer, child))
                if atom is not None and atom.end - atom.start >= 4 and shown is not None:
                    shapes.setdefault(struct.unpack_from("<I", self.layer.data, atom.start)[0], shown)
            elif child.kind == _GROUP:
                self._shapes(child, depth + 1, shapes)


class Anchors:
    """Where the main document's floating shapes are anchored: a PLC of character positions, then of anchors
    (SPA), each first naming its shape's id. Read when asked (a 96 MB table of them held as a dict took 843 MB)."""

    def __init__(self, plc: bytes) -> None:
        self.count = (len(plc) - 4) // (4 + _ANCHOR) if len(plc) >= 4 + 4 + _ANCHOR else 0
        self.plc = plc
        self.positions = unsigned(plc[:4 * self.count])

    def shape(self, position: int) -> int | None:
        """The id of the shape anchored at character ``position``, if one is."""
        index = bisect.bisect_left(self.positions, position)
        if index == self.count or self.positions[index] != position:
            return None
        return int(struct.unpack_from("<I", self.plc, 4 * (self.count + 1) + _ANCHOR * index)[0])


def inline_picture(data: Records, location: int) -> Found | None:
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


def placed_pictures(blocks: list[str], sentinel: str, located: list[Key], pictures: DocPictures,
                    images: EmbeddedImages) -> str:
    """The document's text, its ``blocks`` (paragraphs and tables) a blank line apart, each ``sentinel`` in them
    left out: it stands where the next picture of ``located`` is. Each picture is kept with its alt text, the
    span of its block (through its caption), and its caption."""
    texts = [clean_text(block.replace(sentinel, "")) for block in blocks]
    text = "\n\n".join(block for block in texts if block)
    files = PictureFiles(images.limits)
    keys = iter(located)
    number = offset = 0  # the pictures named, where the next block with text starts
    before: tuple[int, int] | None = None  # the span of the last block with text before the current one
    for index, block in enumerate(blocks if located else []):
        held = (offset, offset + len(texts[index])) if texts[index] else None
        if count := block.count(sentinel):
            following = texts[index + 1] if index + 1 < len(texts) else ""
            after = held[1] + 2 if held is not None else offset  # where the caption would start
            captioned = (after, after + len(following)) if is_figure_caption(following) else None
            start, end = picture_span(held, captioned, before)
            for key in itertools.islice(keys, count):
                if images.full:
                    images.beyond_limits(1)
                    continue
                if (picture := pictures.picture(key)) is None:  # a drawn shape
                    continue
                number += 1
                found, alt = picture
                image, sha256, reason = files.file(found)
                if image is None:
                    images.skip(f"picture {number}", reason)
                else:
                    images.add_bytes(image, f"picture {number}", sha256=sha256, start=start, end=end, alt=alt,
                                     caption=following if captioned else None)
        if held is not None:
            before, offset = held, held[1] + 2
    return text
