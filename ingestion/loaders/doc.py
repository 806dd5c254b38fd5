"""Word 97-2003 documents (.doc, as Word and WPS write them): the main text, read through the piece table.

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
from pathlib import Path
from typing import NamedTuple

from ingestion.loaders import ole
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, clean_text
from ingestion.loaders.images import describe_error
from kb.types import ExtractedDocument

_WORD_97 = 0xA5EC  # the FIB's wIdent of Word 97 and later (Word 6 and 95 wrote 0xA5DC)
_ENCRYPTED, _TABLE_1, _OBFUSCATED = 0x0100, 0x0200, 0x8000  # FibBase flags
_CLX_INDEX = 33  # fcClx/lcbClx: the 34th pair of FibRgFcLcb97
_PAPX_INDEX = 13  # fcPlcfBtePapx/lcbPlcfBtePapx: where the paragraph properties' pages are
# Paragraph property modifiers (sprms) that say where a paragraph stands in a table, and the table definition's,
# whose operand size is two bytes; the size of the others' operand is in their top three bits.
_IN_TABLE, _ROW_END, _INNER_CELL, _INNER_ROW_END, _TABLE_DEPTH = 0x2416, 0x2417, 0x244B, 0x244C, 0x6649
_TABLE_DEFINITION = 0xD608
_OPERAND_SIZES = {0: 1, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2, 7: 3}
_PIECE = struct.Struct("<HIH")  # a piece descriptor: flags, where its text is (and whether 8-bit), formatting
_COMPRESSED = 0x40000000
# Characters that are marks, not text: pictures and drawn objects (0x01, 0x08), footnote and comment references
# (0x02, 0x05), optional hyphens (0x1F); a line break (0x0B) and a page or section break (0x0C) end a line.
_MARKS = str.maketrans({"\x01": None, "\x02": None, "\x05": None, "\x08": None, "\x1f": None, "\x0b": "\n",
                        "\x0c": "\n", "\x1e": "-", "\x1c": " "})
_FIELD = re.compile("[\x13\x14\x15]")  # a field's begin, separator (its code before, its result after) and end
_PARAGRAPH_MARK = re.compile("[\r\x07]")  # a paragraph's end: a carriage return, or a table cell's or row's mark
_ENDS = re.compile("([^\r\x07\x1d]*)([\r\x07\x1d]|$)")  # a paragraph and its end, as _Marks.tagged writes them


class DocLoader(Loader):
    """Paragraphs as blank-line-separated blocks, a table row per line with cells ' | ' (a nested table's cells
    within its cell), fields as their result, then the text boxes' paragraphs. Footnotes, headers, footers,
    comments and pictures are not read; the title is the document's summary information's. Encrypted files, and
    Word 6 and 95 files, are refused with the reason."""

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
                title = ole.summary_title(package)
        except (LoadError, MemoryError):
            raise
        except Exception as error:  # olefile reports a broken file with many exception types
            raise LoadError(f"corrupt DOC: {describe_error(error)}") from error
        start, count = fib.boxes[0], min(fib.boxes[1], limits.max_chars - fib.characters)
        pieces = _pieces(table[fib.clx[0]:fib.clx[0] + fib.clx[1]], max(fib.characters, start + count))
        marks = _Marks(word, table[fib.papx[0]:fib.papx[0] + fib.papx[1]], pieces)
        text = _fields(marks.tagged(_text(word, pieces, 0, fib.characters), 0))
        if count:  # the text boxes' story, after the main document's
            text += "\r" + _fields(marks.tagged(_text(word, pieces, start, start + count), start))
        return ExtractedDocument(text=_blocks(text.translate(_MARKS)), file_type=self.file_type, title=title)


class _Fib(NamedTuple):
    """What the File Information Block says: the table stream's name, the main text's length in characters, and
    where the piece table and the paragraph properties' index lie in the table stream (offset, size)."""

    table: str
    characters: int
    clx: tuple[int, int]
    papx: tuple[int, int]
    boxes: tuple[int, int]  # the text boxes' story: its first character position and its length


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
    except struct.error as error:
        raise LoadError("corrupt DOC: its FIB is cut short") from error
    return _Fib("1Table" if flags & _TABLE_1 else "0Table", max(characters, 0), clx, papx,
                (sum(lengths[:6]), lengths[6]))


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


class _Marks:
    """What each paragraph mark is, from its paragraph's properties (PAPX, in 512-byte FKP pages the PlcBtePapx
    indexes by stream offset): a paragraph in a table cell, a cell's end, a row's end, or a nested table's."""

    def __init__(self, word: bytes, index: bytes, pieces: list[_Piece]) -> None:
        self.word = word
        self.pieces = pieces
        self.starts = [piece.start for piece in pieces]
        count = (len(index) - 4) // 8 if len(index) >= 12 else 0
        self.offsets = struct.unpack_from(f"<{count + 1}I", index) if count else ()
        self.pages = [number & 0x3FFFFF for number in struct.unpack_from(f"<{count}I", index, 4 * (count + 1))] \
            if count else []
        self.runs: dict[int, tuple[list[int], list[tuple[bool, bool, bool]]]] = {}

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
            flags = self._flags(first + mark.start()) if self.pages else None
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

    def _flags(self, position: int) -> tuple[bool, bool, bool] | None:
        """(in a table, a row's end, a nested table's mark) of the paragraph ending at character ``position``."""
        piece = self.pieces[bisect.bisect_right(self.starts, position) - 1]
        offset = piece.offset + (position - piece.start) * (1 if piece.compressed else 2)
        page = bisect.bisect_right(self.offsets, offset) - 1
        if not 0 <= page < len(self.pages):
            return None
        if page not in self.runs:
            self.runs[page] = _fkp(self.word[self.pages[page] * 512:self.pages[page] * 512 + 512])
        ends, flags = self.runs[page]
        run = bisect.bisect_right(ends, offset) - 1
        return flags[run] if 0 <= run < len(flags) else None


def _fkp(page: bytes) -> tuple[list[int], list[tuple[bool, bool, bool]]]:
    """A PAPX FKP page: the stream offset each run of paragraphs starts at, and each run's table flags."""
    if len(page) < 512:
        return [], []
    count = min(page[511], 29)  # runs: 29 at most fit a page
    ends = list(struct.unpack_from(f"<{count + 1}I", page))
    flags = []
    for run in range(count):
        at = 2 * page[4 * (count + 1) + 13 * run]
        size = 2 * page[at] - 1 if at and page[at] else 2 * page[at + 1] if at else 0
        start = at + 1 if at and page[at] else at + 2
        flags.append(_table_flags(page[start + 2:start + size]) if size > 2 else (False, False, False))
    return ends, flags


def _table_flags(sprms: bytes) -> tuple[bool, bool, bool]:
    """(in a table, a row's end, a nested table's mark) from a paragraph's property modifiers (sprms)."""
    in_table = row_end = inner = False
    at = 0
    while at + 2 <= len(sprms):
        sprm = struct.unpack_from("<H", sprms, at)[0]
        at += 2
        if at >= len(sprms):
            break
        value = sprms[at]
        if sprm == _IN_TABLE:
            in_table = bool(value)
        elif sprm == _ROW_END:
            row_end = bool(value)
        elif sprm in (_INNER_CELL, _INNER_ROW_END):
            inner = inner or bool(value)
        elif sprm == _TABLE_DEPTH and at + 4 <= len(sprms):
            in_table = struct.unpack_from("<i", sprms, at)[0] > 0
            inner = struct.unpack_from("<i", sprms, at)[0] > 1
        if sprm == _TABLE_DEFINITION and at + 2 <= len(sprms):
            at += 2 + struct.unpack_from("<H", sprms, at)[0] - 1
        else:
            spra = sprm >> 13
            at += 1 + value if spra == 6 else _OPERAND_SIZES[spra]
    return in_table, row_end, inner


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


def _blocks(text: str) -> str:
    """Paragraphs a blank line apart; table rows a line each, cells ' | ', a cell's paragraphs joined by a space
    (the marks as ``_Marks.tagged`` writes them)."""
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
    return "\n\n".join(cleaned for block in blocks if (cleaned := clean_text(block)))
