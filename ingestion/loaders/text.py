"""Plain text files in any encoding ``decode_text`` recognises."""

from __future__ import annotations

from pathlib import Path

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import Limits, Loader, OnKept, clean_text
from kb.types import ExtractedDocument


class TextLoader(Loader):
    """A text file is its own visible text; there is no title."""

    file_type = "text"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        warnings: list[str] = []
        text = encoding.decode_text(data, warnings=warnings)
        limits.check_chars(len(text))  # before cleaning copies it
        return ExtractedDocument(text=clean_text(text), file_type=self.file_type, warnings=warnings)
