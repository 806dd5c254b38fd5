"""Word 97-2003 documents (.doc, as Word and WPS write them): the main text, read through the piece table.

The text of a .doc is stored in pieces (runs of 8-bit Windows-1252 or UTF-16 text) that the piece table puts in
order; the main document is its first ``ccpText`` characters (footnotes, headers and comments follow it). Paragraphs
end with a carriage return, table cells and rows with a 0x07 mark, and fields show their result, not their code.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ingestion.loaders import ole
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, clean_text
from ingestion.loaders.images import describe_error
from kb.types import ExtractedDocument

_WORD_97 = 0xA5EC  # the FIB's wIdent of Word 97 and later (Word 6 and 95 wrote 0xA5DC)
_ENCRYPTED, _TABLE_1, _OBFUSCATED = 0x0100, 0x0200, 0x8000  # FibBase flags
_CLX_INDEX = 33  # fcClx/lcbClx: the 34th pair of FibRgFcLcb97
_PIECE = struct.Struct("<HIH")  # a piece descriptor: flags, where its text is (and whether 8-bit), formatting
_COMPRESSED = 0x40000000
# Characters that are marks, not text: pictures and drawn objects (0x01, 0x08), footnote and comment references
# (0x02, 0x05), optional hyphens (0x1F); a line break (0x0B) and a page or section break (0x0C) end a line.
_MARKS = str.maketrans({"\x01": None, "\x02": None, "\x05": None, "\x08": None, "\x1f": None, "\x0b": "\n",
                        "\x0c": "\n", "\x1e": "-"})
_FIELD = re.compile("[\x13\x14\x15]")  # a field's begin, separator (its code before, its result after) and end
_ENDS = re.compile("([^\r\x07]*)([\r\x07]|$)")  # a paragraph and its end: a carriage return, or a cell's mark


class DocLoader(Loader):
    """Paragraphs as blank-line-separated blocks, a table row per line with cells ' | ' (a cell's paragraphs before
    its last one read as paragraphs of their own), fields as their result. Footnotes, headers, footers, comments and
    pictures are not read; the title is the document's summary information's. Encrypted files, and Word 6 and 95
    files, are refused with the reason."""

    file_type = "doc"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        try:
            with ole.open_package(data, "DOC") as package:
                if not package.exists("WordDocument"):
                    raise LoadError("not a Word document: an OLE file without a WordDocument stream")
                word = package.openstream("WordDocument").read()
                table_name, characters, clx_at, clx_size = _fib(word)
                limits.check_chars(characters)
                if not package.exists(table_name):
                    raise LoadError(f"corrupt DOC: its {table_name} stream is missing")
                clx = package.openstream(table_name).read()[clx_at:clx_at + clx_size]
                title = ole.summary_title(package)
        except (LoadError, MemoryError):
            raise
        except Exception as error:  # olefile reports a broken file with many exception types
            raise LoadError(f"corrupt DOC: {describe_error(error)}") from error
        text = _fields(_text(word, _pieces(clx), characters))
        return ExtractedDocument(text=_blocks(text.translate(_MARKS)), file_type=self.file_type, title=title)


def _fib(word: bytes) -> tuple[str, int, int, int]:
    """From the File Information Block: the table stream's name, the main text's length in characters, and where
    the piece table lies in the table stream."""
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
        characters = struct.unpack_from("<i", word, at + 2 + 12)[0] if longs > 3 else 0
        at += 2 + 4 * longs
        pairs = struct.unpack_from("<H", word, at)[0]
        if pairs <= _CLX_INDEX:
            raise LoadError("corrupt DOC: its FIB has no piece table")
        clx_at, clx_size = struct.unpack_from("<II", word, at + 2 + 8 * _CLX_INDEX)
    except struct.error as error:
        raise LoadError("corrupt DOC: its FIB is cut short") from error
    return ("1Table" if flags & _TABLE_1 else "0Table"), max(characters, 0), clx_at, clx_size


def _pieces(clx: bytes) -> list[tuple[int, int, int, bool]]:
    """The piece table: for each piece, its first and last character position, where its text starts in the
    WordDocument stream, and whether it is 8-bit. Formatting records (Prc) before it are skipped."""
    at = 0
    while at < len(clx) and clx[at] == 0x01:  # a Prc: a size, then that many bytes of formatting
        if at + 3 > len(clx):
            break
        at += 3 + struct.unpack_from("<h", clx, at + 1)[0]
    if at + 5 > len(clx) or clx[at] != 0x02:
        raise LoadError("corrupt DOC: no piece table where its FIB says")
    size = struct.unpack_from("<I", clx, at + 1)[0]
    table = clx[at + 5:at + 5 + size]
    count = (len(table) - 4) // 12
    if count < 1:
        raise LoadError("corrupt DOC: an empty piece table")
    positions = struct.unpack_from(f"<{count + 1}I", table)
    if any(later < earlier for earlier, later in zip(positions, positions[1:])):
        raise LoadError("corrupt DOC: its pieces are out of order")
    pieces = []
    for index in range(count):
        _, where, _ = _PIECE.unpack_from(table, 4 * (count + 1) + 8 * index)
        compressed = bool(where & _COMPRESSED)
        offset = (where & ~_COMPRESSED & 0x3FFFFFFF) // 2 if compressed else where
        pieces.append((positions[index], positions[index + 1], offset, compressed))
    return pieces


def _text(word: bytes, pieces: list[tuple[int, int, int, bool]], characters: int) -> str:
    """The main document's characters, piece by piece; a piece running past the stream is cut there."""
    parts: list[str] = []
    for start, end, offset, compressed in pieces:
        if start >= characters:
            break
        length = min(end, characters) - start
        if compressed:
            parts.append(word[offset:offset + length].decode("cp1252", "replace"))
        else:
            parts.append(word[offset:offset + 2 * length].decode("utf-16-le", "replace"))
    return "".join(parts)


def _fields(text: str) -> str:
    """Each field as its result: the code between its begin mark and its separator is dropped (a field within a
    field's code with it), and the marks."""
    if not _FIELD.search(text):
        return text
    shown: list[str] = []
    codes: list[bool] = []  # for each field open, whether its code (not yet its result) is being read
    position = 0
    for mark in _FIELD.finditer(text):
        if not any(codes):
            shown.append(text[position:mark.start()])
        position = mark.end()
        if mark.group() == "\x13":
            codes.append(True)
        elif codes and mark.group() == "\x14":
            codes[-1] = False
        elif codes:
            codes.pop()
    if not any(codes):
        shown.append(text[position:])
    return "".join(shown)


def _blocks(text: str) -> str:
    """Paragraphs a blank line apart; table rows a line each. A cell ends with a 0x07 mark and a row with one more
    (an empty paragraph after a cell's mark), so a row's cells are joined once its mark is met."""
    blocks: list[str] = []
    rows: list[str] = []
    cells: list[str] = []
    after_cell = False
    for match in _ENDS.finditer(text):
        paragraph, end = match.groups()
        if end == "\x07" and after_cell and not paragraph:
            rows.append(" | ".join(cell for cell in cells if cell))
            cells, after_cell = [], False
            continue
        if end == "\x07":
            cells.append(" ".join(paragraph.split()))
            after_cell = True
            continue
        if rows and not cells:
            blocks.append("\n".join(row for row in rows if row))
            rows = []
        blocks.append(paragraph)
        after_cell = False
        if not end:
            break
    if cells:
        rows.append(" | ".join(cell for cell in cells if cell))
    if rows:
        blocks.append("\n".join(row for row in rows if row))
    return "\n\n".join(cleaned for block in blocks if (cleaned := clean_text(block)))

