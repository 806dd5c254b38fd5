"""The loader contract: bytes of one file in, an ``ExtractedDocument`` (clean visible text) out."""

from __future__ import annotations

import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kb.errors import KbError
from kb.text import valid_unicode
from kb.types import ExtractedDocument, ExtractedImage, Page

if TYPE_CHECKING:
    from kb.config import Settings


class OnKept(Protocol):
    """Given each image a document keeps, as it keeps it (``ingestion.ocr.PreparedAsKept`` reads its text and cuts
    it to preview size), so that a long scan is read a page at a time instead of every page waiting at full size."""

    def __call__(self, image: ExtractedImage) -> None: ...

    @property
    def reads_scans(self) -> bool:
        """Whether a scanned page's text is read now (OCR is on and the file's time for it is not spent): one
        past the document's allowance of pictures is then still kept, for its text only."""
        ...

    def passed_over(self, count: int) -> None:
        """``count`` pictures of scanned pages past the document's allowance were not kept (``reads_scans`` was
        false): OCR's report counts them as pages it left unread."""
        ...

    def reading(self, scanned_page: bool) -> AbstractContextManager[bool]:
        """Holds decoding a picture about to be kept, and keeping it; yields whether that is one step of reading
        it (a scanned page OCR reads), whose decoding is then part of reading the page, not of the document's
        image clock."""
        ...


class Stopwatch:
    """The seconds spent inside ``running()``, counted once however deeply it is held, a hold under way included:
    the work a file's budgets count, or leave out of their count."""

    def __init__(self) -> None:
        self._spent = 0.0
        self._since: float | None = None

    @property
    def seconds(self) -> float:
        return self._spent + (time.monotonic() - self._since if self._since is not None else 0.0)

    @contextmanager
    def running(self) -> Iterator[None]:
        if self._since is not None:
            yield
            return
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._spent += time.monotonic() - self._since
            self._since = None


class LoadError(KbError):
    """A file that cannot be turned into text; the message is the reason a person reads in the report."""


class OverBudget(LoadError):
    """A file whose text is over the allowance: a reason to refuse the whole file, never only the part read last."""


@dataclass(frozen=True)
class Limits:
    """The work one file may cost a loader; the defaults are those of the knowledge base's settings.

    ``max_chars`` bounds the extracted text, ``max_pages`` the pages read (PDF pages, slides, sheets) and
    ``max_markup_bytes`` the size of an HTML page (parsing costs about a hundred times its size in memory). For
    images: ``max_pixels`` refuses decompression bombs from the header; embedded images under ``min_side`` on a
    side are decoration; kept images are scaled down to ``max_side``; a document keeps at most ``max_images``
    images (a repeated picture counts each time it appears) and holds ``max_total_pixels`` pixels of them; a
    referenced image file may hold ``max_bytes``, and all of a document's together ``max_total_bytes``; files a
    document names are read only when ``references`` (not for an e-mail's attachment, which has no folder).
    ``seconds`` is the time the file may take to be read and loaded (``file_timeout``): a loader of many parts read
    apart (a mailbox's messages, a workbook's sheets) stops in time to keep those it read (``past_half_time``).
    """

    max_chars: int = 10_000_000
    max_pages: int = 2000
    max_markup_bytes: int = 5 * 2**20
    max_pixels: int = 64_000_000
    min_side: int = 32
    max_side: int = 2048
    max_images: int = 200
    max_total_pixels: int = 100_000_000
    max_bytes: int = 50 * 2**20
    max_total_bytes: int = 200 * 2**20
    references: bool = True
    seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        ingestion = settings.ingestion
        return cls(max_chars=ingestion.max_document_chars, max_pages=ingestion.max_pages,
                   max_markup_bytes=int(ingestion.max_html_mb * 2**20), max_pixels=ingestion.max_image_pixels,
                   min_side=ingestion.min_image_side, seconds=ingestion.file_timeout)

    def past_half_time(self, started: float) -> bool:
        """Whether half of ``seconds`` has gone since ``started`` (``time.monotonic``): a loader of many parts reads
        no more of them, keeping those it read; the rest is for the part then being read (a message of 5 MB of HTML
        takes 8 s). Six dense HTML mails, 31 MB, took 48 s: a mailbox over its 60 s was failed whole."""
        return time.monotonic() - started > self.seconds / 2

    def check_chars(self, count: int) -> None:
        """Refuse a document whose text has grown past ``max_chars``."""
        if count > self.max_chars:
            raise OverBudget(f"over budget: more than {self.max_chars:,} characters of text (max_document_chars)")


_MAX_TITLE = 1000  # a title is one line a person reads; a longer one is cut
# Characters that end a line in some convention; all become "\n" so the chunker sees one kind of break.
_LINE_BREAKS = re.compile(r"\r\n|[\r\v\f\x85\u2028\u2029]")
# Control characters other than "\n" and "\t", plus stray byte-order marks inside the text.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Typographic ligatures (mostly from PDFs) spelled out, so that "ﬁnd" matches a search for "find".
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})


NESTED_CELL, NESTED_ROW = "\x1a", "\x1b"  # where a table nested in a cell ends a cell and a row, in a loader's text
NESTED_BLANKS = str.maketrans("\x1a\x1b", "  ")  # those characters in a file's own text, or outside a cell


def row_text(cells: list[str], sentinel: str = "") -> tuple[str, str]:
    """A table row's cells ' | ' and, apart, the marks of the cells that hold only ``sentinel`` (a loader's mark for
    a picture): an empty cell, or one of only pictures, is no cell of the row."""
    visible = " | ".join(cell for cell in cells if cell.replace(sentinel, "").strip())
    pictures = "".join(cell.replace(" ", "") for cell in cells if not cell.replace(sentinel, "").strip())
    return visible, pictures


def cell_text(text: str, sentinel: str = "") -> str:
    """A table cell's text on one line; a table nested in it (its cells and rows ended by ``NESTED_CELL`` and
    ``NESTED_ROW``) as the DOCX loader reads one: its rows a space apart, each as ``row_text`` joins it."""
    if NESTED_CELL in text or NESTED_ROW in text:
        text = " ".join("".join(row_text([cell.strip() for cell in row.split(NESTED_CELL)], sentinel))
                        for row in text.split(NESTED_ROW))
    text = " ".join(text.split())
    if sentinel and sentinel in text:  # no blank left doubled where a picture's mark is taken out
        text = re.sub(f"(^| )({re.escape(sentinel)}+) ", r"\1\2", text)
        text = re.sub(f" ({re.escape(sentinel)}+)$", r"\1", text)
    return text


def kept_by_cleaning(char: str) -> bool:
    """Whether ``clean_text`` keeps ``char`` wherever it stands: not white space (dropped at a line's end), not a
    control character (dropped)."""
    return not char.isspace() and _CONTROL.fullmatch(char) is None


def clean_text(text: str) -> str:
    """``text`` in the one shape every loader returns, because offsets point into it and the chunker reads it.

    NFC-normalised, ligatures spelled out, control characters (all but "\n" and "\t") dropped, every line
    break a "\n", no trailing spaces, and at most one blank line in a row (blank lines separate paragraphs).
    Surrogates that pair up become their character, and a lone one U+FFFD: the tokenizers and the database take
    only valid Unicode.
    """
    text = unicodedata.normalize("NFC", valid_unicode(text)).translate(_LIGATURES)
    text = _CONTROL.sub("", _LINE_BREAKS.sub("\n", text))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


MAX_WARNINGS = 20  # warnings of one kind said one by one on a document; the rest are counted


class CappedWarnings:
    """A document's warnings of one kind: the first ``MAX_WARNINGS`` said, the rest counted in one last warning
    (``more``, formatted with the count), so that a hostile file cannot fill its record with them."""

    def __init__(self, warnings: list[str], more: str) -> None:
        self.warnings = warnings
        self.more = more
        self._said = 0
        self._unsaid = 0

    def add(self, warning: str) -> None:
        """Say ``warning``, or only count it once ``MAX_WARNINGS`` were said."""
        if self._said < MAX_WARNINGS:
            self._said += 1
            self.warnings.append(warning)
        else:
            self._unsaid += 1

    def finish(self) -> None:
        """Add the count of the warnings not said, if any."""
        if self._unsaid:
            self.warnings.append(self.more.format(self._unsaid))


class Loader(ABC):
    """Turns the bytes of one kind of file into its visible text.

    The caller reads the bytes once (it also hashes them); ``path`` names the file in messages, and locates the
    image files a document refers to, which are read only inside ``root`` (the source folder; default the
    document's own folder) under the containment rule (``kb.containment``).
    """

    file_type: str

    def load(self, path: Path, data: bytes, limits: Limits | None = None, root: Path | None = None,
             on_kept: OnKept | None = None) -> ExtractedDocument:
        """The document in ``data``; raises ``LoadError`` with a readable reason when there is none.

        The title comes back as one clean line, or None when it is blank. The work stays within ``limits``
        (``Limits.from_settings``; default: the default settings'); a text over ``max_chars`` is refused.
        ``on_kept`` is called on each image embedded in a document as it is kept (an image file's own picture is
        left to the caller), and may read its text and cut it down.
        """
        if not data:
            raise LoadError("empty file")
        limits = limits or Limits()
        document = self.extract(path, data, limits, (root or path.parent).resolve(), on_kept)
        limits.check_chars(len(document.text))
        document.warnings = [valid_unicode(warning) for warning in document.warnings]  # they quote names and text
        if document.title is not None:
            document.title = clean_text(" ".join(document.title.split())[:_MAX_TITLE]) or None
        return document

    @abstractmethod
    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        """Format-specific work for ``load``; ``data`` is never empty here."""


def join_pages(texts: list[str]) -> tuple[str, list[Page]]:
    """Page texts (a PDF's pages, a workbook's sheets, a deck's slides) joined by a blank line, with each page's
    span; an empty page gets an empty span where it would have been."""
    parts: list[str] = []
    pages: list[Page] = []
    offset = 0
    for number, text in enumerate(texts, 1):
        if text:
            if parts:
                parts.append("\n\n")
                offset += 2
            parts.append(text)
        pages.append(Page(number=number, start=offset, end=offset + len(text)))
        offset += len(text)
    return "".join(parts), pages


class TextCursor:
    """Finds snippets of a loader's cleaned text in reading order, so that each lands on its own occurrence."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.start = self.end = 0  # the span of the last snippet found

    def find(self, snippet: str, until: int | None = None) -> tuple[int, int] | None:
        """Where ``snippet``, cleaned like the text, lies after the last snippet found (and ends by ``until``);
        None if nowhere. A repeated snippet thus lands on its next occurrence, not again on the first."""
        return self._find(snippet, self.end, len(self.text) if until is None else until)

    def find_within(self, snippet: str) -> tuple[int, int] | None:
        """Where ``snippet`` lies inside the last snippet found (a block nested in the block found before)."""
        return self._find(snippet, self.start, self.end)

    def _find(self, snippet: str, start: int, end: int) -> tuple[int, int] | None:
        needle = clean_text(snippet)
        found = self.text.find(needle, start, end) if needle else -1
        if found < 0:
            return None
        self.start, self.end = found, found + len(needle)
        return self.start, self.end
