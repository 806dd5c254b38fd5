"""Marks written into a text while it is rendered, so that a place in it (where an image's block or alt text begins)
is known exactly once the text is cleaned, not looked for by its words, which may occur earlier too."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence

from ingestion.loaders.base import kept_by_cleaning

_PLACE = "\ufffc"  # OBJECT REPLACEMENT CHARACTER: not whitespace nor a control character, so cleaning keeps it


class PlaceMarks:
    """Numbered marks of one rendering: U+FFFC, a secret of the rendering, the number, U+FFFC. The secret keeps a
    file from writing marks of its own (with character references, say)."""

    def __init__(self) -> None:
        self._secret = secrets.token_hex(8)
        self._mark = re.compile(f"{_PLACE}{self._secret}([0-9]+){_PLACE}")

    def mark(self, number: int) -> str:
        """The mark of place ``number``, to write where that place begins."""
        return f"{_PLACE}{self._secret}{number}{_PLACE}"

    def without(self, text: str) -> str:
        """``text`` with its marks removed."""
        return self._mark.sub("", text)

    def places(self, marked: str) -> tuple[str, dict[int, int]]:
        """``marked`` without its marks, and where each marked place is in it, by number."""
        pieces: list[str] = []
        places: dict[int, int] = {}
        length = last = 0
        for mark in self._mark.finditer(marked):
            pieces.append(marked[last:mark.start()])
            length += mark.start() - last
            places[int(mark.group(1))] = length
            last = mark.end()
        pieces.append(marked[last:])
        return "".join(pieces), places


def before_text(marks: Sequence[str], text: str) -> str | None:
    """``text`` with ``marks`` written before its first character that cleaning keeps as it is (not white space, a
    no-break space included, nor a control or combining character), so that cleaning changes nothing across them
    (trailing spaces, blank lines, composed characters); None when it has no such character, and the marks must
    wait for the text after it."""
    index = 0
    while index < len(text) and not (kept_by_cleaning(text[index]) and not unicodedata.combining(text[index])):
        index += 1
    return None if index == len(text) else text[:index] + "".join(marks) + text[index:]


def after_text(text: str, marks: Sequence[str]) -> str:
    """``text`` (the end of a text) with ``marks`` written after its last character that cleaning keeps, what
    cleaning would drop after it left out."""
    end = len(text)
    while end and not kept_by_cleaning(text[end - 1]):
        end -= 1
    return text[:end] + "".join(marks)
