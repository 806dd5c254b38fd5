"""Word 97-2003 documents (.doc, as Word and WPS write them): the main text, read through the piece table, and
its pictures (see ``doc_pictures``).

The text of a .doc is stored in pieces (runs of 8-bit Windows-1252 or UTF-16 text) that the piece table puts in
order; the main document is its first ``ccpText`` characters (footnotes, headers, comments and endnotes follow it,
then the text boxes' story, read after it; a note's text is read where its reference stands). Paragraphs end with a
carriage return, table cells and rows with a 0x07 mark (their paragraph properties tell which, see
``doc_properties``), and fields show their result, not their code.
"""

from __future__ import annotations

import bisect
import io
import re
import struct
from array import array
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple

from ingestion.loaders import ole
from ingestion.loaders.base import (
    NESTED_BLANKS,
    NESTED_CELL,
    NESTED_ROW,
    Limits,
    Loader,
    LoadError,
    OnKept,
    cell_text,
    row_text,
)
from ingestion.loaders.doc_pictures import Anchors, DocPictures, Key, placed_pictures
from ingestion.loaders.doc_properties import (
    NESTED_CELL_END,
    NESTED_ROW_END,
    NOT_NESTED,
    Formatting,
    TableFlags,
    character_page,
    paragraph_page,
)
from ingestion.loaders.images import EmbeddedImages, describe_error
from kb.types import ExtractedDocument

_WORD_97 = 0xA5EC  # the FIB's wIdent of Word 97 and later (Word 6 and 95 wrote 0xA5DC)
_ENCRYPTED, _TABLE_1, _OBFUSCATED = 0x0100, 0x0200, 0x8000  # FibBase flags
_CLX_INDEX = 33  # fcClx/lcbClx: the 34th pair of FibRgFcLcb97
_CHPX_INDEX, _PAPX_INDEX = 12, 13  # fcPlcfBteChpx, fcPlcfBtePapx: where the character and paragraph properties are
_ANCHORS_INDEX, _DRAWINGS_INDEX = 40, 50  # fcPlcSpaMom, fcDggInfo: the floating shapes' anchors, the drawing layer
# fcPlcffndRef and fcPlcffndTxt, fcPlcfendRef and fcPlcfendTxt: where footnotes' and endnotes' references and texts are
_NOTES_INDEXES = ((2, 3), (46, 47))
_PIECE = struct.Struct("<HIH")  # a piece descriptor: flags, where its text is (and whether 8-bit), formatting
_COMPRESSED = 0x40000000
# Characters that are marks, not text: pictures and drawn objects (0x01, 0x08), footnote and comment references
# (0x02, 0x05), optional hyphens (0x1F); a line break (0x0B) and a page or section break (0x0C) end a line.
_MARKS = str.maketrans({"\x01": None, "\x02": None, "\x05": None, "\x08": None, "\x1f": None, "\x0b": "\n",
                        "\x0c": "\n", "\x1e": "-", "\x1c": " "})
_FIELD = re.compile("[\x13\x14\x15]")  # a field's begin, separator (its code before, its result after) and end
_PICTURE_MARK = re.compile("[\x01\x08]")  # an inline picture's character, a floating shape's anchor
_PARAGRAPH_MARK = re.compile("[\r\x07]")  # a paragraph's end: a carriage return, or a table cell's or row's mark
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # one character in a string, two positions in the file (UTF-16)
_ENDS = re.compile("([^\r\x07\x1d]*)([\r\x07\x1d]|$)")  # a paragraph and its end, as _Reading.story writes them
_PRIVATE_USE = range(0xE000, 0xF900)  # characters no text should hold: one stands for the pictures until placed
_MAX_PICTURES = 10_000  # pictures marked
_MAX_LOOKUPS = 100_000  # picture and anchor characters looked up (most are pictures; others, objects and fields)
_MAX_NOTES = 10_000  # footnotes and endnotes read, each
_NOTE_BREAKS = re.compile("[\r\x07\x1a-\x1d]")  # a note's paragraph and cell ends, as _Reading.story writes them
_NOT_REFERENCES = frozenset("\r\x07\x0b\x0c\x01\x08")  # marks a note's reference never stands on
_NESTED_MARKS = {NESTED_CELL_END: NESTED_CELL, NESTED_ROW_END: NESTED_ROW}  # as _Reading.story writes them


class DocLoader(Loader):
    """Paragraphs as blank-line-separated blocks, a table row per line with cells ' | ' (a table nested in a cell
    within it, its rows a space apart), fields as their result, footnotes and endnotes where their reference stands,
    on one line, then the text boxes' paragraphs. Pictures (PNG, JPEG, TIFF, bitmaps), inline or floating, come with
    their alt text, caption and the span of their paragraph. Headers, footers and comments are not read; the title is
    the document's summary information's. Encrypted files, and Word 6 and 95 files, are refused with the reason."""

    file_type = "doc"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        try:
            with ole.open_package(data, "DOC") as package:
                if not package.exists("WordDocument"):
                    works = " (Microsoft Works saved its documents as .wps too: they are not read)" if (
                        path.suffix.lower() == ".wps") else ""
                    raise LoadError(f"not a Word document: an OLE file without a WordDocument stream{works}")
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
        room = limits.max_chars - fib.characters  # characters the notes, then the text boxes, may add
        stories: list[_Story] = []
        for story in (*fib.notes, fib.boxes):
            stories.append(story._replace(length=min(story.length, room)))
            room -= stories[-1].length
        *note_stories, (start, count, _, _) = stories
        cut = any(kept.length < story.length for kept, story in zip(note_stories, fib.notes, strict=True))
        pieces = _Pieces(_pieces(table[fib.clx[0]:fib.clx[0] + fib.clx[1]], max(fib.characters, start + count)))
        main, boxes = _text(word, pieces.pieces, 0, fib.characters), _text(word, pieces.pieces, start, start + count)
        note_texts = [_text(word, pieces.pieces, story.first, story.first + story.length) for story in note_stories]
        warnings = ["notes past the text allowance (max_document_chars) were not read"] if cut else []
        used = {character for character in set(main).union(boxes, *note_texts) if "\ue000" <= character <= "\uf8ff"}
        free = (chr(code) for code in _PRIVATE_USE if chr(code) not in used)
        sentinel, note_mark = next(free, None), next(free, None)
        if sentinel is None:
            warnings.append("its pictures were not read: its text uses every private-use character")
        if note_mark is None and any(note_texts):
            warnings.append("its notes were not read: its text uses every private-use character but one")
        reading = _Reading(pieces, Formatting(word, _part(table, fib.papx), paragraph_page),
                           Formatting(word, _part(table, fib.chpx), character_page), sentinel, warnings)
        notes = sorted((note for story, text in zip(note_stories, note_texts, strict=True)
                        for note in reading.notes(text, story, table)), key=lambda note: note[0]) if note_mark else []
        pictures = DocPictures(data_stream, _part(table, fib.drawings), word)
        text = reading.story(main, 0, Anchors(_part(table, fib.anchors)), note_mark, notes)
        if count:  # the text boxes' story, after the main document's (its pictures are inline ones)
            text += "\r" + reading.story(boxes, start, Anchors(b""))
        images = EmbeddedImages(limits, warnings, root, on_kept)
        text = placed_pictures(_blocks(text.translate(_MARKS), reading.sentinel), reading.sentinel, reading.located,
                               pictures, images)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, images=images.finish(),
                                 warnings=warnings)


def _part(table: bytes, where: tuple[int, int]) -> bytes:
    """The bytes of the table stream at ``where`` (offset, size)."""
    return table[where[0]:where[0] + where[1]]


class _Story(NamedTuple):
    """A story after the main document's: its first character position, its length, and where (offset, size) in
    the table stream its notes' references and texts are (for footnotes and endnotes)."""

    first: int
    length: int
    references: tuple[int, int] = (0, 0)
    texts: tuple[int, int] = (0, 0)


class _Fib(NamedTuple):
    """What the File Information Block says: the table stream's name, the main text's length in characters, and
    where the piece table and the paragraph properties' index lie in the table stream (offset, size)."""

    table: str
    characters: int
    clx: tuple[int, int]
    papx: tuple[int, int]
    chpx: tuple[int, int]  # the character properties' index
    notes: tuple[_Story, _Story]  # the footnotes' and endnotes' stories
    boxes: _Story  # the text boxes' story
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
        notes = tuple(_Story(sum(lengths[:first]), lengths[first], *(
            struct.unpack_from("<II", word, at + 2 + 8 * index) if pairs > index else (0, 0) for index in indexes))
            for first, indexes in zip((1, 5), _NOTES_INDEXES, strict=True))
    except struct.error as error:
        raise LoadError("corrupt DOC: its FIB is cut short") from error
    return _Fib("1Table" if flags & _TABLE_1 else "0Table", max(characters, 0), clx, papx, chpx, notes,
                _Story(sum(lengths[:6]), lengths[6]), anchors, drawings)


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


class _Pieces:
    """The pieces of the text, and where in the WordDocument stream the character at a position is."""

    def __init__(self, pieces: list[_Piece]) -> None:
        self.pieces = pieces
        self.starts = [piece.start for piece in pieces]

    def offset(self, position: int) -> int:
        piece = self.pieces[max(bisect.bisect_right(self.starts, position) - 1, 0)]
        return piece.offset + (position - piece.start) * (1 if piece.compressed else 2)


class _Positions:
    """The character position of each index of a story's string: a character outside the Basic Multilingual
    Plane (an emoji) is one in the string and two in the file, whose positions count UTF-16 units."""

    def __init__(self, text: str, first: int) -> None:
        self.first = first
        self.astral = array("I", (found.start() for found in _ASTRAL.finditer(text)))

    def at(self, index: int) -> int:
        return self.first + index + bisect.bisect_left(self.astral, index)

    def index(self, position: int) -> int:
        """The index of the character at ``position`` (of an emoji's, at either of its two)."""
        astral = self.astral
        return position - self.first - bisect.bisect_left(range(len(astral)), position,
                                                          key=lambda k: self.first + astral[k] + k)


class _Reading:
    """Turns a story's characters into the text ``_blocks`` reads: each mark as its paragraph's properties say
    (see ``story``), each field as its result, and each picture's character as ``sentinel``, the picture added to
    ``located`` (at most ``_MAX_PICTURES``)."""

    def __init__(self, pieces: _Pieces, paragraphs: Formatting[TableFlags], characters: Formatting[int | None],
                 sentinel: str | None, warnings: list[str]) -> None:
        self.pieces = pieces
        self.paragraphs = paragraphs
        self.characters = characters
        self.sentinel = sentinel or "\x01"  # (without one, no picture is marked: "\x01" is a mark, left out)
        self.marking = sentinel is not None
        self.warnings = warnings
        self.located: list[Key] = []
        self.lookups = 0

    def story(self, text: str, first: int, anchors: Anchors, note_mark: str | None = None,
              notes: Sequence[tuple[int, str]] = (), pictures: bool = True) -> str:
        """The story ``text`` (from character position ``first``) with a paragraph's end ``\\r``, a cell's
        ``\\x07``, a row's ``\\x1d``, a paragraph inside a cell ``\\x1c``, a nested table's cell ``\\x1a`` and row
        ``\\x1b`` (its paragraphs a space); its fields as their result, its pictures marked (floating ones by
        ``anchors``), and each of its ``notes`` (reference position, text) in place of its reference."""
        if NESTED_CELL in text or NESTED_ROW in text:  # (the characters _tagged writes for a nested table's ends)
            text = text.translate(NESTED_BLANKS)
        positions = _Positions(text, first)
        shown = _shown(text)
        read: list[str] = []
        if note_mark is not None and notes:
            text, read = _marked_notes(text, positions, shown, note_mark, notes)
        if self.marking and pictures:
            text = self._pictures(text, positions, shown, anchors)
        text = self._tagged(text, positions)
        text = "".join(text[start:end] for start, end in zip(*shown, strict=True))
        if not read:
            return text
        parts = text.split(note_mark)  # a note after a space, unless one is there
        spaced = [note if not note or part[-1:].isspace() else " " + note for part, note in zip(parts, read)]
        return "".join(chain.from_iterable(zip(parts, [*spaced, ""])))

    def notes(self, text: str, story: _Story, table: bytes) -> list[tuple[int, str]]:
        """The notes of a footnotes' or endnotes' ``story`` (its characters ``text``), each (where its reference
        stands in the main document, its text on one line): the n references pair with the first n texts, which
        must follow each other inside the story (so that the notes together are at most as long as it is)."""
        references, texts = _part(table, story.references), _part(table, story.texts)
        count = min((len(references) - 4) // 6, len(texts) // 4 - 1)
        if count > _MAX_NOTES:
            self.warnings.append(f"notes past the first {_MAX_NOTES:,} of a kind were not read")
        count = min(count, _MAX_NOTES)
        if count <= 0:
            return []
        positions, bounds = struct.unpack_from(f"<{count}i", references), struct.unpack_from(f"<{count + 1}i", texts)
        story_positions = _Positions(text, story.first)
        notes, done = [], 0
        for reference, start, end in zip(positions, bounds, bounds[1:]):
            if done <= start < end <= story.length:
                first, last = (story_positions.index(story.first + bound) for bound in (start, end))
                note = self.story(text[first:last], story.first + start, Anchors(b""), pictures=False)
                notes.append((reference, " ".join(_NOTE_BREAKS.sub(" ", note.translate(_MARKS)).split())))
                done = end
        return notes

    def _pictures(self, text: str, positions: _Positions, shown: tuple[array[int], array[int]],
                  anchors: Anchors) -> str:
        """``text`` with each picture's character that a field's code does not hide as the sentinel: an inline
        one's (where its properties place it in the Data stream) or a floating one's (the shape anchored there);
        other marks (form data, embedded objects) are left as they are."""
        parts: list[str] = []
        position = 0
        starts, ends = shown
        for mark in _PICTURE_MARK.finditer(text):
            span = bisect.bisect_right(starts, mark.start()) - 1
            if span < 0 or mark.start() >= ends[span]:  # in a field's code: dropped with it
                continue
            self.lookups += 1
            if len(self.located) >= _MAX_PICTURES or self.lookups > _MAX_LOOKUPS:
                self.warnings.append(f"pictures past the first {_MAX_PICTURES:,} were not looked at"
                                     if len(self.located) >= _MAX_PICTURES else
                                     f"picture characters past the first {_MAX_LOOKUPS:,} were not looked at")
                self.marking = False
                break
            at = positions.at(mark.start())
            if mark.group() == "\x08":
                shape = anchors.shape(at)
                key = (True, shape) if shape is not None else None
            else:
                location = self.characters.at(self.pieces.offset(at))
                key = (False, location) if location is not None else None
            if key is not None:
                parts += [text[position:mark.start()], self.sentinel]
                position = mark.end()
                self.located.append(key)
        parts.append(text[position:])
        return "".join(parts)

    def _tagged(self, text: str, positions: _Positions) -> str:
        """``text`` with each paragraph mark tagged (see ``story``). Without paragraph properties, a cell's mark
        right after another one (an empty paragraph) is taken for a row's end."""
        tagged = io.StringIO()
        position, after_cell = 0, False
        for mark in _PARAGRAPH_MARK.finditer(text):
            tagged.write(text[position:mark.start()])
            position = mark.end()
            flags = self.paragraphs.at(self.pieces.offset(positions.at(mark.start())))
            if flags is None:  # by the text alone: an empty paragraph after a cell's mark ends the row
                row_end = mark.group() == "\x07" and after_cell and text[mark.start() - 1:mark.start()] == "\x07"
                flags = (mark.group() == "\x07", row_end, NOT_NESTED)
            in_table, row_end, nested = flags
            if nested:
                tagged.write(_NESTED_MARKS.get(nested, " "))
            elif mark.group() == "\x07":
                tagged.write("\x1d" if row_end else "\x07")
            else:
                tagged.write("\x1c" if in_table else "\r")
            after_cell = mark.group() == "\x07" and not row_end
        tagged.write(text[position:])
        return tagged.getvalue()


def _marked_notes(text: str, positions: _Positions, shown: tuple[array[int], array[int]], note_mark: str,
                  notes: Sequence[tuple[int, str]]) -> tuple[str, list[str]]:
    """``text`` with the reference of each of ``notes`` (position, text; in order) that is shown (not in a field's
    code) as ``note_mark``, and those notes' texts in order (a place named twice holds its first note). A reference
    on a paragraph's, cell's or picture's mark is not read: only a hostile file puts one there, and reading it
    would lose the mark."""
    parts, read = [], []
    done, starts, ends = 0, *shown
    for position, note in notes:
        index = positions.index(position)
        span = bisect.bisect_right(starts, index) - 1
        if index >= done and span >= 0 and index < ends[span] and text[index] not in _NOT_REFERENCES:
            parts += [text[done:index], note_mark]
            read.append(note)
            done = index + 1
    parts.append(text[done:])
    return "".join(parts), read


def _shown(text: str) -> tuple[array[int], array[int]]:
    """Where the text is shown (starts, ends): each field as its result, its code between its begin mark and its
    separator hidden (a field within a field's code with it), and the marks."""
    starts, ends = array("I"), array("I")
    codes: list[bool] = []  # for each field open, whether its code (not yet its result) is being read
    in_code = 0  # how many of them are
    position = 0
    for mark in _FIELD.finditer(text):
        if not in_code and mark.start() > position:
            starts.append(position)
            ends.append(mark.start())
        position = mark.end()
        if mark.group() == "\x13":
            codes.append(True)
            in_code += 1
        elif codes and mark.group() == "\x14" and codes[-1]:
            codes[-1] = False
            in_code -= 1
        elif codes and mark.group() == "\x15":
            in_code -= codes.pop()
    if not in_code and len(text) > position:
        starts.append(position)
        ends.append(len(text))
    return starts, ends


def _blocks(text: str, sentinel: str) -> list[str]:
    """The document's blocks: its paragraphs, and its tables a row per line, cells ' | ', a cell's paragraphs
    joined by a space (the marks as ``_Reading.story`` writes them). A cell holding only pictures is no cell: its
    sentinels go with its row (a row of only pictures with the row before)."""
    blocks: list[str] = []
    rows: list[str] = []
    cells: list[str] = []

    def add_row(row: list[str]) -> None:
        visible, pictures = row_text(row, sentinel)
        if visible or not rows:
            rows.append(visible + pictures)
        else:
            rows[-1] += pictures

    for match in _ENDS.finditer(text):
        paragraph, end = match.groups()
        if end == "\x07":
            cells.append(cell_text(paragraph, sentinel))
        elif end == "\x1d":
            if paragraph.strip() or cells:
                add_row([*cells, cell_text(paragraph, sentinel)])
            cells = []
        else:
            if rows:
                blocks.append("\n".join(row for row in rows if row))
                rows = []
            if cells:  # cells of a row whose end was never marked
                add_row(cells)
                blocks.append(rows.pop())
                cells = []
            blocks.append(paragraph.translate(NESTED_BLANKS))  # (a nested table's ends outside any cell: blanks)
            if not end:
                break
    if cells:
        add_row(cells)
    if rows:
        blocks.append("\n".join(row for row in rows if row))
    return blocks
