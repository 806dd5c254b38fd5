"""Word 97-2003 documents (.doc, as Word and WPS write them): the main text, read through the piece table, and
its pictures (see ``doc_pictures``).

The text of a .doc is stored in pieces (runs of 8-bit Windows-1252 or UTF-16 text) that the piece table puts in
order; the main document is its first ``ccpText`` characters (footnotes, headers and comments follow it, then the
text boxes' story, read after it). Paragraphs end with a carriage return, table cells and rows with a 0x07 mark
(their paragraph properties tell which), and fields show their result, not their code.
"""

from __future__ import annotations

import bisect
import io
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

from ingestion.loaders import ole
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept
from ingestion.loaders.doc_pictures import DocPictures, Key, placed_pictures
from ingestion.loaders.images import EmbeddedImages, describe_error
from kb.types import ExtractedDocument

_WORD_97 = 0xA5EC  # the FIB's wIdent of Word 97 and later (Word 6 and 95 wrote 0xA5DC)
_ENCRYPTED, _TABLE_1, _OBFUSCATED = 0x0100, 0x0200, 0x8000  # FibBase flags
_CLX_INDEX = 33  # fcClx/lcbClx: the 34th pair of FibRgFcLcb97
_CHPX_INDEX, _PAPX_INDEX = 12, 13  # fcPlcfBteChpx, fcPlcfBtePapx: where the character and paragraph properties are
_ANCHORS_INDEX, _DRAWINGS_INDEX = 40, 50  # fcPlcSpaMom, fcDggInfo: the floating shapes' anchors, the drawing layer
# Paragraph property modifiers (sprms) that say where a paragraph stands in a table, and the table definition's,
# whose operand size is two bytes; the size of the others' operand is in their top three bits.
_IN_TABLE, _ROW_END, _INNER_CELL, _INNER_ROW_END, _TABLE_DEPTH = 0x2416, 0x2417, 0x244B, 0x244C, 0x6649
_TABLE_DEFINITION = 0xD608
# Character property modifiers: where an inline picture is in the Data stream; a mark that is form data or an object.
_PICTURE_LOCATION, _FORM_DATA, _OBJECT = 0x6A03, 0x0806, 0x080A
_OPERAND_SIZES = {0: 1, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2, 7: 3}
_PIECE = struct.Struct("<HIH")  # a piece descriptor: flags, where its text is (and whether 8-bit), formatting
_COMPRESSED = 0x40000000
# Characters that are marks, not text: pictures and drawn objects (0x01, 0x08), footnote and comment references
# (0x02, 0x05), optional hyphens (0x1F); a line break (0x0B) and a page or section break (0x0C) end a line.
_MARKS = str.maketrans({"\x01": None, "\x02": None, "\x05": None, "\x08": None, "\x1f": None, "\x0b": "\n",
                        "\x0c": "\n", "\x1e": "-", "\x1c": " "})
_FIELD = re.compile("[\x13\x14\x15]")  # a field's begin, separator (its code before, its result after) and end
_PICTURE_MARK = re.compile("[\x01\x08]")  # an inline picture's character, a floating shape's anchor
_PARAGRAPH_MARK = re.compile("[\r\x07]")  # a paragraph's end: a carriage return, or a table cell's or row's mark
# Characters no text of a document should hold: one stands for its pictures until they are placed.
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_ENDS = re.compile("([^\r\x07\x1d]*)([\r\x07\x1d]|$)")  # a paragraph and its end, as _Marks.tagged writes them


class DocLoader(Loader):
    """Paragraphs as blank-line-separated blocks, a table row per line with cells ' | ' (a nested table's cells
    within its cell), fields as their result, then the text boxes' paragraphs. Pictures (PNG, JPEG, TIFF, bitmaps),
    inline or floating, come with their alt text, caption and the span of their paragraph. Footnotes, headers,
    footers and comments are not read; the title is the document's summary information's. Encrypted
    files, and Word 6 and 95 files, are refused with the reason."""

    file_type = "doc"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        try:
            with ole.open_package(data, "DOC") as package:
                if not package.exists("WordDocument"):
                    raise LoadError("not a Word document: an OLE file without a WordDocument stream")
                word = package.openstream("WordDocument").read()
                fib = _fib(word)
                limits.check_chars(fib.characters)
                if not package.exists(fib.table):
                    raise LoadError(f"corrupt DOC: its {fib.table} stream is missing")
                table = package.openstream(fib.table).read()
                data_stream = package.openstream("Data").read() if package.exists("Data") else b""
                title = ole.summary_title(package)
        except (LoadError, MemoryError):
            raise
        except Exception as error:  # olefile reports a broken file with many exception types
            raise LoadError(f"corrupt DOC: {describe_error(error)}") from error
        start, count = fib.boxes[0], min(fib.boxes[1], limits.max_chars - fib.characters)
        pieces = _pieces(table[fib.clx[0]:fib.clx[0] + fib.clx[1]], max(fib.characters, start + count))
        marks = _Marks(word, table[fib.papx[0]:fib.papx[0] + fib.papx[1]], pieces)
        characters = _Formatting(word, table[fib.chpx[0]:fib.chpx[0] + fib.chpx[1]], pieces, _chpx_page)
        pictures = DocPictures(data_stream, table[fib.drawings[0]:fib.drawings[0] + fib.drawings[1]],
                               table[fib.anchors[0]:fib.anchors[0] + fib.anchors[1]], word)
        main, boxes = _text(word, pieces, 0, fib.characters), _text(word, pieces, start, start + count)
        warnings: list[str] = []
        used = set(_PRIVATE_USE.findall(main)) | set(_PRIVATE_USE.findall(boxes))
        sentinel = next((chr(code) for code in range(0xE000, 0xF900) if chr(code) not in used), None)
        if sentinel is None:
            warnings.append("its pictures were not read: its text uses every private-use character")
            characters = _Formatting(word, b"", pieces, _chpx_page)
            pictures.anchors = {}
        located: list[Key] = []  # the pictures, in the order of the text
        text = _fields(marks.tagged(_pictures_marked(main, 0, characters, pictures.anchors, sentinel or "", located),
                                    0))
        if count:  # the text boxes' story, after the main document's (its pictures are inline ones)
            boxes = _pictures_marked(boxes, start, characters, {}, sentinel or "", located)
            text += "\r" + _fields(marks.tagged(boxes, start))
        images = EmbeddedImages(limits, warnings, root, on_kept)
        text = placed_pictures(_blocks(text.translate(_MARKS)), sentinel or "\x01", located, pictures, images)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, images=images.finish(),
                                 warnings=warnings)


class _Fib(NamedTuple):
    """What the File Information Block says: the table stream's name, the main text's length in characters, and
    where the piece table and the paragraph properties' index lie in the table stream (offset, size)."""

    table: str
    characters: int
    clx: tuple[int, int]
    papx: tuple[int, int]
    chpx: tuple[int, int]  # the character properties' index
    boxes: tuple[int, int]  # the text boxes' story: its first character position and its length
    anchors: tuple[int, int]  # the main document's floating shapes' anchors (PlcSpaMom)
    drawings: tuple[int, int]  # the drawing layer (OfficeArtContent)


def _fib(word: bytes) -> _Fib:
    if len(word) < 34:
        raise LoadError("corrupt DOC: its WordDocument stream is too short")
    ident, version = struct.unpack_from("<HH", word)
    flags = struct.unpack_from("<H", word, 0x0A)[0]
    if ident != _WORD_97:
        raise LoadError(f"a Word 6 or 95 document (or not a Word document): version {version:#x} is not read")
    if flags & (_ENCRYPTED | _OBFUSCATED):
        raise LoadError("encrypted DOC (password-protected): it cannot be read without its password")
    try:
        at = 32
        words = struct.unpack_from("<H", word, at)[0]
        at += 2 + 2 * words
        longs = struct.unpack_from("<H", word, at)[0]
        # ccpText, then the lengths of the stories after it: footnotes, headers, macros, comments, endnotes, boxes
        lengths = [max(length, 0) for length in struct.unpack_from("<7i", word, at + 2 + 12)] if longs > 9 else [0] * 7
        characters = struct.unpack_from("<i", word, at + 2 + 12)[0] if longs > 3 else 0
        at += 2 + 4 * longs
        pairs = struct.unpack_from("<H", word, at)[0]
        if pairs <= _CLX_INDEX:
            raise LoadError("corrupt DOC: its FIB has no piece table")
        clx = struct.unpack_from("<II", word, at + 2 + 8 * _CLX_INDEX)
        papx = struct.unpack_from("<II", word, at + 2 + 8 * _PAPX_INDEX)
        chpx = struct.unpack_from("<II", word, at + 2 + 8 * _CHPX_INDEX)
        anchors, drawings = (struct.unpack_from("<II", word, at + 2 + 8 * index) if pairs > _DRAWINGS_INDEX
                             else (0, 0) for index in (_ANCHORS_INDEX, _DRAWINGS_INDEX))
    except struct.error as error:
        raise LoadError("corrupt DOC: its FIB is cut short") from error
    return _Fib("1Table" if flags & _TABLE_1 else "0Table", max(characters, 0), clx, papx, chpx,
                (sum(lengths[:6]), lengths[6]), anchors, drawings)


class _Piece(NamedTuple):
    """A run of the text: its first and last character position, where its text starts in the WordDocument
    stream, and whether it is 8-bit (a byte a character) or UTF-16."""

    start: int
    end: int
    offset: int
    compressed: bool


def _pieces(clx: bytes, characters: int) -> list[_Piece]:
    """The pieces of the first ``characters``, in order; formatting records (Prc) before the piece table are
    skipped, each by its size."""
    at = 0
    while at + 3 <= len(clx) and clx[at] == 0x01:  # a Prc: a size (never negative), then that much formatting
        size = struct.unpack_from("<h", clx, at + 1)[0]
        if size < 0:
            raise LoadError("corrupt DOC: a formatting record of negative size")
        at += 3 + size
    if at + 5 > len(clx) or clx[at] != 0x02:
        raise LoadError("corrupt DOC: no piece table where its FIB says")
    size = struct.unpack_from("<I", clx, at + 1)[0]
    table = memoryview(clx)[at + 5:at + 5 + size]
    count = (len(table) - 4) // 12
    if count < 1:
        raise LoadError("corrupt DOC: an empty piece table")
    positions = struct.iter_unpack("<I", table[:4 * (count + 1)])
    descriptors = _PIECE.iter_unpack(table[4 * (count + 1):4 * (count + 1) + 8 * count])
    pieces: list[_Piece] = []
    (start,) = next(positions)
    for (end,), (_, where, _) in zip(positions, descriptors):
        if end < start:
            raise LoadError("corrupt DOC: its pieces are out of order")
        if start >= characters:
            break
        compressed = bool(where & _COMPRESSED)
        offset = (where & ~_COMPRESSED & 0x3FFFFFFF) // 2 if compressed else where
        if end > start:
            pieces.append(_Piece(start, min(end, characters), offset, compressed))
        start = end
    return pieces


def _text(word: bytes, pieces: list[_Piece], first: int, end: int) -> str:
    """The characters from position ``first`` to ``end``, piece by piece; a piece running past the stream is cut
    there."""
    text = io.StringIO()
    for piece in pieces[max(bisect.bisect_right([piece.start for piece in pieces], first) - 1, 0):]:
        if piece.start >= end:
            break
        skip, length = max(first - piece.start, 0), min(piece.end, end) - max(piece.start, first)
        if length <= 0:
            continue
        width = 1 if piece.compressed else 2
        raw = word[piece.offset + width * skip:piece.offset + width * (skip + length)]
        text.write(raw.decode("cp1252" if piece.compressed else "utf-16-le", "replace"))
    return text.getvalue()


T = TypeVar("T")


class _Formatting(Generic[T]):
    """Properties kept in 512-byte FKP pages that a bin table (PlcBte) indexes by stream offset: the page and
    the stream offset of the character at a position. Each page is parsed once, by ``parse``."""

    def __init__(self, word: bytes, index: bytes, pieces: list[_Piece],
                 parse: Callable[[bytes], tuple[list[int], list[T]]]) -> None:
        self.word = word
        self.pieces = pieces
        self.starts = [piece.start for piece in pieces]
        self.parse = parse
        count = (len(index) - 4) // 8 if len(index) >= 12 else 0
        self.offsets = struct.unpack_from(f"<{count + 1}I", index) if count else ()
        self.pages = [number & 0x3FFFFF for number in struct.unpack_from(f"<{count}I", index, 4 * (count + 1))] \
            if count else []
        self.runs: dict[int, tuple[list[int], list[T]]] = {}

    def at(self, position: int) -> T | None:
        """The properties of the character at ``position`` (None when no page holds them)."""
        if not self.pages or position < 0:
            return None
        piece = self.pieces[bisect.bisect_right(self.starts, position) - 1]
        offset = piece.offset + (position - piece.start) * (1 if piece.compressed else 2)
        page = bisect.bisect_right(self.offsets, offset) - 1
        if not 0 <= page < len(self.pages):
            return None
        if page not in self.runs:
            start = self.pages[page] * 512
            self.runs[page] = self.parse(self.word[start:start + 512]) if start + 512 <= len(self.word) else ([], [])
        ends, found = self.runs[page]
        run = bisect.bisect_right(ends, offset) - 1
        return found[run] if 0 <= run < len(found) else None


class _Marks:
    """What each paragraph mark is, from its paragraph's properties (PAPX): a paragraph in a table cell, a cell's
    end, a row's end, or a nested table's."""

    def __init__(self, word: bytes, index: bytes, pieces: list[_Piece]) -> None:
        self.paragraphs = _Formatting(word, index, pieces, _papx_page)

    def tagged(self, text: str, first: int) -> str:
        """``text`` with each mark as ``_blocks`` reads it: a paragraph's end ``\\r``, a cell's ``\\x07``, a row's
        ``\\x1d``, a paragraph inside a cell ``\\x1c``, a nested table's marks a space. Without paragraph properties,
        a cell's mark right after another one (an empty paragraph) is taken for a row's end. ``text`` starts at
        character position ``first``."""
        tagged = io.StringIO()
        position, after_cell = 0, False
        for mark in _PARAGRAPH_MARK.finditer(text):
            tagged.write(text[position:mark.start()])
            position = mark.end()
            flags = self.paragraphs.at(first + mark.start())
            if flags is None:  # by the text alone: an empty paragraph after a cell's mark ends the row
                row_end = mark.group() == "\x07" and after_cell and text[mark.start() - 1:mark.start()] == "\x07"
                flags = (mark.group() == "\x07", row_end, False)
            in_table, row_end, inner = flags
            if inner:
                tagged.write(" ")
            elif mark.group() == "\x07":
                tagged.write("\x1d" if row_end else "\x07")
            else:
                tagged.write("\x1c" if in_table else "\r")
            after_cell = mark.group() == "\x07" and not row_end
        tagged.write(text[position:])
        return tagged.getvalue()


def _papx_page(page: bytes) -> tuple[list[int], list[tuple[bool, bool, bool]]]:
    """A PAPX FKP page: the stream offset each run of paragraphs starts at, and each run's table flags."""
    count = min(page[511], 29)  # runs: 29 at most fit a page
    ends = list(struct.unpack_from(f"<{count + 1}I", page))
    flags = []
    for run in range(count):
        at = 2 * page[4 * (count + 1) + 13 * run]
        size = 2 * page[at] - 1 if at and page[at] else 2 * page[at + 1] if at else 0
        start = at + 1 if at and page[at] else at + 2
        flags.append(_table_flags(page[start + 2:start + size]) if size > 2 else (False, False, False))
    return ends, flags


def _chpx_page(page: bytes) -> tuple[list[int], list[int | None]]:
    """A CHPX FKP page: the stream offset each run of characters starts at, and for each run where its inline
    picture is in the Data stream (None for a run that is no picture, or form data or an embedded object)."""
    count = min(page[511], 101)  # runs: 101 at most fit a page
    ends = list(struct.unpack_from(f"<{count + 1}I", page))
    locations: list[int | None] = []
    for run in range(count):
        at = 2 * page[4 * (count + 1) + run]
        modifiers = dict(_sprms(page[at + 1:at + 1 + page[at]])) if at else {}
        location = modifiers.get(_PICTURE_LOCATION, b"")
        other = [flag for flag in (_FORM_DATA, _OBJECT) if modifiers.get(flag, b"\0")[:1] not in (b"", b"\0")]
        locations.append(struct.unpack("<I", location)[0] if len(location) == 4 and not other else None)
    return ends, locations


def _sprms(grpprl: bytes) -> Iterator[tuple[int, bytes]]:
    """The property modifiers (sprm, operand) in a run of them; the size of an operand is in its sprm's top three
    bits, or its first byte (two for a table's definition)."""
    at = 0
    while at + 2 < len(grpprl):
        sprm = struct.unpack_from("<H", grpprl, at)[0]
        at += 2
        if sprm == _TABLE_DEFINITION and at + 2 <= len(grpprl):
            size = struct.unpack_from("<H", grpprl, at)[0] - 1
            at += 2
        elif sprm >> 13 == 6:
            size = grpprl[at]
            at += 1
        else:
            size = _OPERAND_SIZES[sprm >> 13]
        yield sprm, grpprl[at:at + size]
        at += size


def _table_flags(sprms: bytes) -> tuple[bool, bool, bool]:
    """(in a table, a row's end, a nested table's mark) from a paragraph's property modifiers (sprms)."""
    in_table = row_end = inner = False
    for sprm, operand in _sprms(sprms):
        value = operand[0] if operand else 0
        if sprm == _IN_TABLE:
            in_table = bool(value)
        elif sprm == _ROW_END:
            row_end = bool(value)
        elif sprm in (_INNER_CELL, _INNER_ROW_END):
            inner = inner or bool(value)
        elif sprm == _TABLE_DEPTH and len(operand) == 4:
            depth = struct.unpack("<i", operand)[0]
            in_table, inner = depth > 0, depth > 1
    return in_table, row_end, inner


def _pictures_marked(text: str, first: int, characters: _Formatting[int | None], anchors: dict[int, int],
                     sentinel: str, located: list[Key]) -> str:
    """``text`` (from character position ``first``) with each picture's character as ``sentinel``, the picture
    added to ``located``: an inline one's (where its properties place it in the Data stream) and a floating one's
    (the shape anchored there); other marks (form data, embedded objects) are left as they are."""
    parts: list[str] = []
    position = 0
    for mark in _PICTURE_MARK.finditer(text):
        if mark.group() == "\x08":
            key = (True, anchors[first + mark.start()]) if first + mark.start() in anchors else None
        else:
            location = characters.at(first + mark.start())
            key = (False, location) if location is not None else None
        if key is not None:
            parts += [text[position:mark.start()], sentinel]
            position = mark.end()
            located.append(key)
    parts.append(text[position:])
    return "".join(parts)


def _fields(text: str) -> str:
    """Each field as its result: the code between its begin mark and its separator is dropped (a field within a
    field's code with it), and the marks."""
    if not _FIELD.search(text):
        return text
    shown = io.StringIO()
    codes: list[bool] = []  # for each field open, whether its code (not yet its result) is being read
    in_code = 0  # how many of them are
    position = 0
    for mark in _FIELD.finditer(text):
        if not in_code:
            shown.write(text[position:mark.start()])
        position = mark.end()
        if mark.group() == "\x13":
            codes.append(True)
            in_code += 1
        elif codes and mark.group() == "\x14" and codes[-1]:
            codes[-1] = False
            in_code -= 1
        elif codes and mark.group() == "\x15":
            in_code -= codes.pop()
    if not in_code:
        shown.write(text[position:])
    return shown.getvalue()


def _blocks(text: str) -> list[str]:
    """The document's blocks: its paragraphs, and its tables a row per line, cells ' | ', a cell's paragraphs
    joined by a space (the marks as ``_Marks.tagged`` writes them)."""
    blocks: list[str] = []
    rows: list[str] = []
    cells: list[str] = []
    for match in _ENDS.finditer(text):
        paragraph, end = match.groups()
        if end == "\x07":
            cells.append(" ".join(paragraph.split()))
        elif end == "\x1d":
            if paragraph.strip() or cells:
                rows.append(" | ".join(cell for cell in [*cells, " ".join(paragraph.split())] if cell))
            cells = []
        else:
            if rows:
                blocks.append("\n".join(row for row in rows if row))
                rows = []
            if cells:  # cells of a row whose end was never marked
                blocks.append(" | ".join(cell for cell in cells if cell))
                cells = []
            blocks.append(paragraph)
            if not end:
                break
    if cells:
        rows.append(" | ".join(cell for cell in cells if cell))
    if rows:
        blocks.append("\n".join(row for row in rows if row))
    return blocks
