"""Formatting of a Word 97-2003 document: paragraph and character properties, kept as property modifiers (sprms)
in 512-byte FKP pages that a bin table indexes by stream offset. Only what the loader reads is taken from them:
where a paragraph stands in a table, and where an inline picture is."""

from __future__ import annotations

import bisect
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

# Paragraph property modifiers (sprms) that say where a paragraph stands in a table, and the table definition's,
# whose operand size is two bytes; the size of the others' operand is in their top three bits.
_IN_TABLE, _ROW_END, _INNER_CELL, _INNER_ROW_END, _TABLE_DEPTH = 0x2416, 0x2417, 0x244B, 0x244C, 0x6649
_TABLE_DEFINITION = 0xD608
# Character property modifiers: where an inline picture is in the Data stream; a mark that is form data or an object.
_PICTURE_LOCATION, _FORM_DATA, _OBJECT = 0x6A03, 0x0806, 0x080A
_OPERAND_SIZES = {0: 1, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2, 7: 3}
_PAGE_NUMBER = 0x3FFFFF  # the bits of a bin table entry that number its page

T = TypeVar("T")
# A paragraph in a table, a row's end, and what it is to a nested table (one of the four below).
TableFlags = tuple[bool, bool, int]
NOT_NESTED, NESTED_PARAGRAPH, NESTED_CELL_END, NESTED_ROW_END = range(4)


def unsigned(data: bytes) -> array[int]:
    """``data`` as little-endian 32-bit unsigned integers, 4 bytes each (not a Python int each)."""
    numbers = array("I")
    numbers.frombytes(data[:len(data) // 4 * 4])
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


class Formatting(Generic[T]):
    """Properties kept in FKP pages that a bin table (PlcBte) indexes by stream offset; each page is parsed by
    ``parse`` once and kept (about 1.5 KB: at most one for each 512 bytes of the stream), however many bin table
    entries name it (300,000 entries naming one page each kept their own copy: 1.6 GB) and however often the
    pieces come back to it (a cache of 4,096 pages, cleared when full, made pieces cycling over 5,000 pages take
    74 s)."""

    def __init__(self, word: bytes, index: bytes, parse: Callable[[bytes], tuple[list[int], list[T]]]) -> None:
        self.word = word
        self.parse = parse
        count = (len(index) - 4) // 8 if len(index) >= 12 else 0
        self.offsets = unsigned(index[:4 * (count + 1)]) if count else array("I")
        self.pages = unsigned(index[4 * (count + 1):4 * (count + 1) + 4 * count]) if count else array("I")
        self.parsed: dict[int, tuple[array[int], list[T]]] = {}  # by page number: where its runs start, theirs

    def at(self, offset: int) -> T | None:
        """The properties of the character at stream ``offset`` (None when no page holds them)."""
        entry = bisect.bisect_right(self.offsets, offset) - 1
        if not 0 <= entry < len(self.pages):
            return None
        page = self.pages[entry] & _PAGE_NUMBER
        if page not in self.parsed:
            start = page * 512
            ends, found = self.parse(self.word[start:start + 512]) if start + 512 <= len(self.word) else ([], [])
            self.parsed[page] = array("I", ends), found
        ends, found = self.parsed[page]
        run = bisect.bisect_right(ends, offset) - 1
        return found[run] if 0 <= run < len(found) else None


def paragraph_page(page: bytes) -> tuple[list[int], list[TableFlags]]:
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


def character_page(page: bytes) -> tuple[list[int], list[int | None]]:
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


def _table_flags(sprms: bytes) -> TableFlags:
    """(in a table, a row's end, what it is to a nested table) from a paragraph's property modifiers (sprms)."""
    in_table = row_end = False
    nested, depth = NOT_NESTED, 0
    for sprm, operand in _sprms(sprms):
        value = operand[0] if operand else 0
        if sprm == _IN_TABLE:
            in_table = bool(value)
        elif sprm == _ROW_END:
            row_end = bool(value)
        elif sprm in (_INNER_CELL, _INNER_ROW_END) and value:
            nested = max(nested, NESTED_CELL_END if sprm == _INNER_CELL else NESTED_ROW_END)
        elif sprm == _TABLE_DEPTH and len(operand) == 4:
            depth = struct.unpack("<i", operand)[0]
            in_table, nested = depth > 0, max(nested, NESTED_PARAGRAPH if depth > 1 else NOT_NESTED)
    if nested == NESTED_ROW_END and depth > 2:  # a row of a table nested deeper: read within its cell, a space
        nested = NESTED_PARAGRAPH
    return in_table, row_end, nested
