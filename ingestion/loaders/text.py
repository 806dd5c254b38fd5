"""Plain text files in any encoding ``decode_text`` recognises."""

from __future__ import annotations

from pathlib import Path

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import ImageLimits, Loader, clean_text
from kb.types import ExtractedDocument


class TextLoader(Loader):
    """A text file is its own visible text; there is no title."""

    file_type = "text"

    def extract(self, path: Path, data: bytes, limits: ImageLimits) -> ExtractedDocument:
        return ExtractedDocument(text=clean_text(encoding.decode_text(data)), file_type=self.file_type)
