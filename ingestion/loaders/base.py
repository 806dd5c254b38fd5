"""The loader contract: bytes of one file in, an ``ExtractedDocument`` (clean visible text) out."""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from pathlib import Path

from kb.types import ExtractedDocument


class LoadError(Exception):
    """A file that cannot be turned into text; the message is the reason a person reads in the report."""


# Characters that end a line in some convention; all become "\n" so the chunker sees one kind of break.
_LINE_BREAKS = re.compile(r"\r\n|[\r\v\f\x85\u2028\u2029]")
# Control characters other than "\n" and "\t", plus stray byte-order marks inside the text.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Typographic ligatures (mostly from PDFs) spelled out, so that "ﬁnd" matches a search for "find".
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})


def clean_text(text: str) -> str:
    """``text`` in the one shape every loader returns, because offsets point into it and the chunker reads it.

    NFC-normalised, ligatures spelled out, control characters (all but "\n" and "\t") dropped, every line
    break a "\n", no trailing spaces, and at most one blank line in a row (blank lines separate paragraphs).
    """
    text = unicodedata.normalize("NFC", text).translate(_LIGATURES)
    text = _CONTROL.sub("", _LINE_BREAKS.sub("\n", text))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


class Loader(ABC):
    """Turns the bytes of one kind of file into its visible text.

    The caller reads the bytes once (it also hashes them); ``path`` only names the file in messages.
    """

    file_type: str

    def load(self, path: Path, data: bytes) -> ExtractedDocument:
        """The document in ``data``; raises ``LoadError`` with a readable reason when there is none.

        The title comes back as one clean line, or None when it is blank.
        """
        if not data:
            raise LoadError("empty file")
        document = self.extract(path, data)
        if document.title is not None:
            document.title = " ".join(clean_text(document.title).split()) or None
        return document

    @abstractmethod
    def extract(self, path: Path, data: bytes) -> ExtractedDocument:
        """Format-specific work for ``load``; ``data`` is never empty here."""
