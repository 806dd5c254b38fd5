"""EPUB books (a zip of XHTML chapters, as e-book tools and Project Gutenberg write them): each chapter of the
reading order a page, read as an HTML page is, its pictures taken from the book itself."""

from __future__ import annotations

import io
import posixpath
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import unquote
from xml.etree.ElementTree import Element

from ingestion.loaders.base import CappedWarnings, Limits, Loader, LoadError, OnKept, OverBudget, join_pages
from ingestion.loaders.html import decode_page, read_page
from ingestion.loaders.images import EmbeddedImages, describe_error
from ingestion.loaders.ooxml import COUNT_CHUNK, UNREADABLE, XmlBudget, counted_as_xml, parse_part, refuse_bombs
from kb.types import ExtractedDocument, ExtractedImage

_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_ENCRYPTED = "{http://www.w3.org/2001/04/xmlenc#}CipherReference"
_PAGES = frozenset({"application/xhtml+xml", "text/html", "application/xml", "text/xml"})
# HTML elements of a book's chapters parsed: BeautifulSoup makes a Python object of each (about 15 us: three
# chapters of 700,000 empty elements took 43 s), so the chapters past it are not read.
_MAX_ELEMENTS = 1_000_000
_MAX_META_BYTES = 2**20  # of container.xml and encryption.xml (the package document may hold max_html_mb)


class EpubLoader(Loader):
    """Text of an EPUB book: the chapters its package document lists in reading order (its spine), each a page
    read as an HTML page is (visible text; pictures with their alt text and caption, read from inside the book,
    never from disk), a chapter listed again read once; the title is the book's own, else its first chapter's. A
    chapter over ``max_html_mb``, one a DRM scheme encrypted, or one that cannot be read is skipped with a warning;
    a book with no chapter to read is refused."""

    file_type = "epub"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        budget = refuse_bombs(data, limits.max_chars, "EPUB")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as book:
                package = _package_path(book)
                opf = _parse(book, package, limits.max_markup_bytes)
                chapters = _spine(opf, posixpath.dirname(package))
                encrypted = _encrypted(book)
                if not chapters:
                    raise LoadError("EPUB lists no chapter of text in its reading order (spine)")
                if all(chapter in encrypted for chapter in chapters):
                    raise LoadError("EPUB is encrypted (DRM): its chapters cannot be read")
                warnings: list[str] = []
                read = _read_chapters(book, chapters, encrypted, limits, EmbeddedImages(
                    limits, warnings, root, on_kept, package=book), warnings, budget)
                found = opf.find(f".//{{*}}metadata/{_DC_TITLE}")
        except UNREADABLE as error:
            raise LoadError(f"corrupt EPUB: {describe_error(error)}") from error
        text, pages = join_pages(read.texts)
        for page, image in read.placed:
            offset = pages[page].start
            image.page, image.start, image.end = page + 1, image.start + offset, image.end + offset
        title = " ".join("".join(found.itertext()).split()) if found is not None else ""
        return ExtractedDocument(text=text, file_type=self.file_type, images=[image for _, image in read.placed],
                                 title=title or next(filter(None, read.titles), None), pages=pages,
                                 warnings=warnings)


class _Chapters(NamedTuple):
    """What a book's chapters read as: each page's text and title, and the pictures kept on each page (their
    spans in that page's text)."""

    texts: list[str]
    titles: list[str | None]
    placed: list[tuple[int, ExtractedImage]]


def _parse(book: zipfile.ZipFile, name: str, max_bytes: int = _MAX_META_BYTES) -> Element:
    """A part of the book parsed safely (``parse_part``), if it is no larger than ``max_bytes`` (blanks between
    tags are not counted by the package check: a 1 MB book's package document of 490 MB took 1.1 GB)."""
    try:
        info = book.getinfo(name)
    except KeyError:
        raise LoadError(f"not an EPUB book: no {name[:200]}") from None
    if info.file_size > max_bytes:
        raise LoadError(f"over budget: EPUB {name[:200]} holds {info.file_size / 2**20:.1f} MB, over "
                        f"{max_bytes / 2**20:g} MB")
    return parse_part(book, name, "EPUB")


def _package_path(book: zipfile.ZipFile) -> str:
    """Where the package document is: the first of the rootfiles META-INF/container.xml names that the book
    holds."""
    names = set(book.namelist())
    for rootfile in _parse(book, "META-INF/container.xml").iterfind(".//{*}rootfile"):
        path = posixpath.normpath(unquote(rootfile.get("full-path", "")))
        if path in names:
            return path
    raise LoadError("not an EPUB book: its container names no package document it holds")


def _spine(opf: Element, folder: str) -> list[str]:
    """The book's pages in reading order: the parts its spine lists, as paths inside the book, each once (a
    chapter listed again is read once: each listing cost a parse); other media, such as a picture listed as a
    page, are left out."""
    items = {item.get("id"): item for item in opf.iterfind(".//{*}manifest/{*}item")}
    chapters: dict[str, None] = {}
    for reference in opf.iterfind(".//{*}spine/{*}itemref"):
        item = items.get(reference.get("idref"))
        if item is not None and item.get("href") and item.get("media-type", "application/xhtml+xml") in _PAGES:
            chapters[posixpath.normpath(posixpath.join(folder, unquote(item.get("href", "").split("#")[0])))] = None
    return list(chapters)


def _encrypted(book: zipfile.ZipFile) -> set[str]:
    """The parts META-INF/encryption.xml says are encrypted (a DRM scheme, or only fonts obfuscated)."""
    if "META-INF/encryption.xml" not in book.namelist():
        return set()
    return {posixpath.normpath(unquote(reference.get("URI", ""))) for reference in _parse(
        book, "META-INF/encryption.xml").iterfind(f".//{_ENCRYPTED}")}


def _read_chapters(book: zipfile.ZipFile, chapters: list[str], encrypted: set[str], limits: Limits,
                   images: EmbeddedImages, warnings: list[str], budget: XmlBudget) -> _Chapters:
    """Each chapter read as a page, within the book's text allowance and XML ``budget``; one that cannot be read
    is an empty page and a warning (a capped number of them)."""
    if len(chapters) > limits.max_pages:
        warnings.append(f"only the first {limits.max_pages} of {len(chapters)} chapters were read (max_pages)")
    skipped = CappedWarnings(warnings, "{} more chapter(s) skipped")
    replaced = CappedWarnings(warnings, "{} more chapter(s) with invalid bytes read as \ufffd")
    read = _Chapters([], [], [])
    length = elements = 0
    for page, chapter in enumerate(chapters[: limits.max_pages]):
        decoding: list[str] = []
        try:
            markup = _chapter_markup(book, chapter, encrypted, limits, decoding, budget)
        except OverBudget:
            raise
        except LoadError as error:
            skipped.add(f"chapter {chapter[:200]} skipped: {error}")
            markup = None
        for note in decoding:
            replaced.add(f"chapter {chapter[:200]}: {note}")
        elements += markup.count("<") - markup.count("</") if markup else 0  # a closing tag is no element
        if elements > _MAX_ELEMENTS:
            warnings.append(f"only the first {page} chapters were read: a book's first {_MAX_ELEMENTS:,} HTML "
                            "elements are read")
            break
        text, title = "", None
        if markup is not None:
            kept = len(images.images)
            text, title = read_page(markup, PurePosixPath(chapter).parent, images, length)
            read.placed.extend((page, image) for image in images.images[kept:])
        length += len(text) + 2
        read.texts.append(text)
        read.titles.append(title)
    skipped.finish()
    replaced.finish()
    images.finish()
    return read


def _chapter_markup(book: zipfile.ZipFile, chapter: str, encrypted: set[str], limits: Limits,
                    warnings: list[str], budget: XmlBudget) -> str:
    """A chapter's HTML as text (how its bytes were decoded, if not cleanly, added to ``warnings``); why not, as a
    ``LoadError``. One that does not start as XML, which the package check passed over as binary, is counted
    against the book's ``budget`` here: 100 chapters of 5 MB comments after an "x" took 77 s and 419 MB."""
    try:
        info = book.getinfo(chapter)
    except KeyError:
        raise LoadError("not in the book") from None
    if chapter in encrypted:
        raise LoadError("encrypted (DRM)")
    if info.file_size > limits.max_markup_bytes:
        raise LoadError(f"{info.file_size / 2**20:.1f} MB of HTML, over the {limits.max_markup_bytes / 2**20:g} MB "
                        "limit (max_html_mb)")
    try:
        markup = book.read(chapter)
    except UNREADABLE as error:
        raise LoadError(f"cannot be unpacked: {describe_error(error)}") from error
    if not counted_as_xml(markup):
        for start in range(0, len(markup), COUNT_CHUNK):  # in pieces, as the package check counts: less memory
            budget.count(markup[start:start + COUNT_CHUNK])
    try:
        return decode_page(markup, warnings)
    except UNREADABLE as error:
        raise LoadError(f"cannot be unpacked: {describe_error(error)}") from error
