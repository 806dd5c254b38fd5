"""PDF files through pypdf: the text layer of each page, with every page's place in the text recorded."""

from __future__ import annotations

import io
from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from ingestion.loaders.base import Loader, LoadError, clean_text
from kb.types import ExtractedDocument, Page

_PAGE_SEPARATOR = "\n\n"
_HEADER_WINDOW = 1024  # readers accept up to this much junk before "%PDF-"


class PdfLoader(Loader):
    """Text of a PDF page by page; pages without a text layer are kept (empty) and reported in a warning.

    pypdf runs in non-strict mode so that slightly broken files still load; at most ``max_pages`` pages are
    read, which bounds the time a pathological file can take.
    """

    file_type = "pdf"

    def __init__(self, max_pages: int = 2000) -> None:
        self.max_pages = max_pages

    def extract(self, path: Path, data: bytes) -> ExtractedDocument:
        try:
            return self._read(data)
        except DependencyError as error:  # AES encryption, even with an empty password, needs a crypto library
            raise LoadError("encrypted PDF (AES): decrypting it needs the 'cryptography' package") from error

    def _read(self, data: bytes) -> ExtractedDocument:
        if b"%PDF-" not in data[:_HEADER_WINDOW]:
            raise LoadError("not a PDF: no %PDF- header at the start of the file")
        # pypdf signals malformed input with many exception types (KeyError, ValueError, zlib.error, ...),
        # so anything raised while opening the file means the file, not this code, is broken.
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            _unlock(reader)
            total = len(reader.pages)
        except (LoadError, DependencyError):
            raise
        except Exception as error:
            raise LoadError(f"corrupt PDF: {_describe(error)}") from error

        warnings: list[str] = []
        count = min(total, self.max_pages)
        if total > count:
            warnings.append(f"only the first {count} of {total} pages were read (max_pages)")
        texts: list[str] = []
        failed: list[int] = []
        for index in range(count):
            try:
                texts.append(clean_text(reader.pages[index].extract_text()))
            except DependencyError:
                raise
            except Exception:  # one unreadable page should not lose the rest of the document
                failed.append(index + 1)
                texts.append("")
        if failed:
            warnings.append(f"text extraction failed on {len(failed)} page(s): {_numbers(failed)}")
        blank = sum(1 for number, text in enumerate(texts, 1) if not text and number not in failed)
        if blank:
            warnings.append(f"{blank} of {count} pages have no text layer (scanned?)")

        text, pages = _join(texts)
        return ExtractedDocument(
            text=text, file_type=self.file_type, title=_title(reader), pages=pages, warnings=warnings
        )


def _unlock(reader: PdfReader) -> None:
    """Open an encrypted PDF with the empty user password (owner-password-only files), or refuse it."""
    if not reader.is_encrypted:
        return
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise LoadError("encrypted PDF (no password)")


def _join(texts: list[str]) -> tuple[str, list[Page]]:
    """Page texts joined by a blank line; an empty page gets an empty span where it would have been."""
    parts: list[str] = []
    pages: list[Page] = []
    offset = 0
    for number, text in enumerate(texts, 1):
        if text:
            if parts:
                parts.append(_PAGE_SEPARATOR)
                offset += len(_PAGE_SEPARATOR)
            parts.append(text)
        pages.append(Page(number=number, start=offset, end=offset + len(text)))
        offset += len(text)
    return "".join(parts), pages


def _title(reader: PdfReader) -> str | None:
    """The title in the document information, if it is a usable string; broken metadata is ignored."""
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # metadata is optional decoration; a malformed entry must not fail the document
        return None
    return title if isinstance(title, str) else None


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _numbers(numbers: list[int], shown: int = 10) -> str:
    listed = ", ".join(str(number) for number in numbers[:shown])
    return listed + (", ..." if len(numbers) > shown else "")
