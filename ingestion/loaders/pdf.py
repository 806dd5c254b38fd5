"""PDF files through pypdf: the text layer of each page, with every page's place in the text recorded."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, PdfReadError
from pypdf.generic import ArrayObject, DictionaryObject

from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, clean_text, join_pages
from ingestion.loaders.images import EmbeddedImages, describe_error
from ingestion.loaders.pdf_fonts import fonts_read_once
from ingestion.loaders.pdf_images import PageImages, content_key, forget_decoded
from ingestion.loaders.pdf_pages import PageDrawer
from kb.types import ExtractedDocument

# pypdf logs every oddity of a malformed file as a warning; the document's own warnings and the ingest report say
# what matters. With a handler of its own, pypdf's records reach an application's logging configuration (the `kb`
# command keeps them in kb.log) but are never printed by Python's last-resort handler on a user's terminal.
logging.getLogger("pypdf").addHandler(logging.NullHandler())

_HEADER_WINDOW = 1024  # readers accept up to this much junk before "%PDF-"
_MAX_PAGE_TREE_ENTRIES = 200_000  # looked at for cycles (pypdf's own bound on a tree's entries is 100,000)


class PdfLoader(Loader):
    """Text of a PDF page by page; pages without a text layer are kept (empty) and reported in a warning.

    The images each page draws come with the page's text span; on a page without a text layer they are marked
    ``scanned_page`` (OCR reads them). An image drawn on several pages is kept once, where it is first drawn; one
    that no page draws (resources may name more than a page shows) is not kept. A scanned page without a picture
    pypdf can decode is drawn whole by pdfium where it is installed (``pdf_pages``). Past the document's allowance
    of pictures, a scanned page OCR reads is still kept, for its text only (``EmbeddedImages.takes``).

    pypdf runs in non-strict mode so that slightly broken files still load; at most ``limits.max_pages`` pages
    are read, and pages sharing one content stream (and resources) are parsed once, which bounds the time a
    pathological file can take; the text is refused as soon as it grows past ``limits.max_chars``.
    """

    file_type = "pdf"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        try:
            return self._read(data, limits, root, on_kept)
        except DependencyError as error:  # AES encryption, even with an empty password, needs a crypto library
            raise LoadError("encrypted PDF (AES): decrypting it needs the 'cryptography' package") from error

    def _read(self, data: bytes, limits: Limits, root: Path, on_kept: OnKept | None) -> ExtractedDocument:
        if b"%PDF-" not in data[:_HEADER_WINDOW]:
            raise LoadError("not a PDF: no %PDF- header at the start of the file")
        # pypdf signals malformed input with many exception types (KeyError, ValueError, zlib.error, ...),
        # so anything raised while opening the file means the file, not this code, is broken.
        warnings: list[str] = []
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            _unlock(reader)
            total = _page_count(reader, warnings)
        except (LoadError, DependencyError):
            raise
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception as error:
            raise LoadError(f"corrupt PDF: {describe_error(error)}") from error

        count = min(total, limits.max_pages)
        if total > count:
            warnings.append(f"only the first {count} of {total} pages were read (max_pages)")
        texts, failed = _page_texts(reader, count, limits)
        if failed:
            warnings.append(f"text extraction failed on {len(failed)} page(s): {_numbers(failed)}")
        blank = sum(1 for number, text in enumerate(texts, 1) if not text and number not in failed)
        if blank:
            warnings.append(f"{blank} of {count} pages have no text layer (scanned?)")

        text, pages = join_pages(texts)
        images = EmbeddedImages(limits, warnings, root, on_kept)
        search = PageImages(images)
        drawer = PageDrawer(data, len(reader.pages), limits.max_side)
        try:
            for index, page in enumerate(pages):  # (on past a full allowance: the images beyond it are counted)
                scanned = not texts[index] and page.number not in failed
                found = search.keep(reader.pages[index], page, scanned)
                drawable = scanned and not found.shown and found.drawable
                if drawable and not images.takes(scanned_page=True):
                    images.beyond_limits(1, scanned_page=True)  # the page's picture, had it been drawn
                    drawable = False
                picture = drawer.draw(index) if drawable else None
                if picture is not None and images.wants(f"page {page.number}", *picture.size, scanned_page=True):
                    images.add_decoded(picture, picture.tobytes(), f"page {page.number}", page=page.number,
                                       start=page.start, end=page.end, scanned_page=True)
                    continue
                for name, reason in found.failures:
                    images.skip(name, reason)
        finally:
            drawer.close()
        return ExtractedDocument(text=text, file_type=self.file_type, title=_title(reader), pages=pages,
                                 images=images.finish(), warnings=warnings)


def _page_texts(reader: PdfReader, count: int, limits: Limits) -> tuple[list[str], list[int]]:
    """The text of the first ``count`` pages ("" for a page without a text layer or whose extraction failed), and
    the numbers of the pages that failed; each font read once, and pages sharing their content stream and
    resources read once. The text is refused as soon as it grows past ``limits.max_chars``."""
    texts: list[str] = []
    failed: list[int] = []
    parsed: dict[object, str | None] = {}  # page text by content stream and resources: None if it failed
    length = 0
    with fonts_read_once():
        for index in range(count):
            page = reader.pages[index]
            key = content_key(page)
            if key is None or key not in parsed:
                try:
                    text: str | None = clean_text(page.extract_text())
                except DependencyError:
                    raise
                except MemoryError:  # the file is over the memory budget: that is the reason
                    raise
                except Exception:  # one unreadable page should not lose the rest of the document
                    text = None
                finally:
                    forget_decoded(page.get("/Contents"))  # each page's content was kept decoded: 2.3 GB for 45
                if key is not None:
                    parsed[key] = text
            else:
                text = parsed[key]
            if text is None:
                failed.append(index + 1)
            texts.append(text or "")
            length += len(text or "") + 2
            limits.check_chars(length)
    return texts, failed


def _page_count(reader: PdfReader, warnings: list[str]) -> int:
    """How many pages the page tree lists; where a list of pages names one it is in (a cycle: pypdf refuses the
    whole file), without those entries, said in ``warnings``."""
    try:
        return len(reader.pages)
    except PdfReadError as error:
        if "cyclic page references" not in str(error):
            raise
    cut = _cut_page_cycles(reader.trailer["/Root"]["/Pages"].get_object())
    warnings.append(f"{cut:,} entr{'y' if cut == 1 else 'ies'} of the page tree naming a list of pages it is in "
                    "(a cycle) left out")
    return len(reader.pages)


def _cut_page_cycles(root: DictionaryObject) -> int:
    """Removes from each list of pages under ``root`` the entries naming that list or one it is in, as pypdf walks
    the tree (depth first), within ``_MAX_PAGE_TREE_ENTRIES``; returns how many."""
    cut, entries = 0, 0
    ancestors: set[int] = set()
    stack: list[tuple[DictionaryObject, Iterator[Any] | None]] = [(root, None)]
    while stack and entries <= _MAX_PAGE_TREE_ENTRIES:
        node, kids = stack[-1]
        if kids is None:  # entered: its entries naming it or a list above it left out
            ancestors.add(id(node))
            listed = node.get("/Kids")
            listed = listed.get_object() if listed is not None else None
            if isinstance(listed, ArrayObject):
                kept = [kid for kid in listed if id(_resolved(kid)) not in ancestors]
                cut += len(listed) - len(kept)
                listed[:] = kept
            kids = iter(listed if isinstance(listed, ArrayObject) else [])
            stack[-1] = (node, kids)
        kid = _resolved(next(kids, None))
        if kid is None:
            ancestors.discard(id(node))
            stack.pop()
            continue
        entries += 1
        if isinstance(kid, DictionaryObject) and "/Kids" in kid:
            stack.append((kid, None))
    return cut


def _resolved(entry: Any) -> Any:
    """A page tree entry's object (None for none, or for a reference that cannot be resolved)."""
    try:
        return entry.get_object() if entry is not None else None
    except Exception:  # pypdf reports a broken reference with many exception types
        return None


def _unlock(reader: PdfReader) -> None:
    """Open an encrypted PDF with the empty user password (owner-password-only files), or refuse it."""
    if not reader.is_encrypted:
        return
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise LoadError("encrypted PDF (no password)")


def _title(reader: PdfReader) -> str | None:
    """The title in the document information, if it is a usable string; broken metadata is ignored."""
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # metadata is optional decoration; a malformed entry must not fail the document
        return None
    return title if isinstance(title, str) else None


def _numbers(numbers: list[int], shown: int = 10) -> str:
    listed = ", ".join(str(number) for number in numbers[:shown])
    return listed + (", ..." if len(numbers) > shown else "")
