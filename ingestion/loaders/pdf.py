"""PDF files through pypdf: the text layer of each page, with every page's place in the text recorded."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import DependencyError
from pypdf.generic import DictionaryObject, IndirectObject, NameObject, StreamObject

from ingestion.loaders.base import Limits, Loader, LoadError, clean_text
from ingestion.loaders.images import EmbeddedImages, ImageError, refuse_many_scans
from ingestion.loaders.pdf_pages import PageDrawer
from kb.types import ExtractedDocument, Page

# pypdf logs every oddity of a malformed file as a warning; the document's own warnings and the ingest report say
# what matters. With a handler of its own, pypdf's records reach an application's logging configuration (the `kb`
# command keeps them in kb.log) but are never printed by Python's last-resort handler on a user's terminal.
logging.getLogger("pypdf").addHandler(logging.NullHandler())

_PAGE_SEPARATOR = "\n\n"
_HEADER_WINDOW = 1024  # readers accept up to this much junk before "%PDF-"
_MAX_FORM_DEPTH = 8  # form XObjects nested deeper than this are not searched for images
_DELIMITERS = rb"\x00\t\n\x0c\r ()<>\[\]{}/%"  # PDF white-space and delimiter characters, which end a name
_DRAW = re.compile(rb"/([^%s]+)[\x00\t\n\x0c\r ]+Do(?=[%s]|$)" % (_DELIMITERS, _DELIMITERS))  # "/Im1 Do"


class PdfLoader(Loader):
    """Text of a PDF page by page; pages without a text layer are kept (empty) and reported in a warning.

    The images each page draws come with the page's text span; on a page without a text layer they are marked
    ``scanned_page`` (OCR reads them). An image drawn on several pages is kept once, where it is first drawn; one
    that no page draws (resources may name more than a page shows) is not kept.

    pypdf runs in non-strict mode so that slightly broken files still load; at most ``limits.max_pages`` pages
    are read, and pages sharing one content stream (and resources) are parsed once, which bounds the time a
    pathological file can take; the text is refused as soon as it grows past ``limits.max_chars``.
    """

    file_type = "pdf"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path) -> ExtractedDocument:
        try:
            return self._read(data, limits, root)
        except DependencyError as error:  # AES encryption, even with an empty password, needs a crypto library
            raise LoadError("encrypted PDF (AES): decrypting it needs the 'cryptography' package") from error

    def _read(self, data: bytes, limits: Limits, root: Path) -> ExtractedDocument:
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
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception as error:
            raise LoadError(f"corrupt PDF: {_describe(error)}") from error

        warnings: list[str] = []
        count = min(total, limits.max_pages)
        if total > count:
            warnings.append(f"only the first {count} of {total} pages were read (max_pages)")
        texts: list[str] = []
        failed: list[int] = []
        parsed: dict[object, str | None] = {}  # page text by content stream and resources: None if it failed
        length = 0
        for index in range(count):
            page = reader.pages[index]
            key = _content_key(page)
            if key is None or key not in parsed:
                try:
                    text: str | None = clean_text(page.extract_text())
                except DependencyError:
                    raise
                except MemoryError:  # the file is over the memory budget: that is the reason
                    raise
                except Exception:  # one unreadable page should not lose the rest of the document
                    text = None
                if key is not None:
                    parsed[key] = text
            else:
                text = parsed[key]
            if text is None:
                failed.append(index + 1)
            texts.append(text or "")
            length += len(text or "") + 2
            limits.check_chars(length)
        if failed:
            warnings.append(f"text extraction failed on {len(failed)} page(s): {_numbers(failed)}")
        blank = sum(1 for number, text in enumerate(texts, 1) if not text and number not in failed)
        if blank:
            warnings.append(f"{blank} of {count} pages have no text layer (scanned?)")

        text, pages = _join(texts)
        images = EmbeddedImages(limits, warnings, root)
        seen: set[tuple[int, int] | int] = set()
        walked: dict[object, int] = {}  # page contents and forms searched for images already (forms: least depth)
        drawer = PageDrawer(data, limits.max_side, limits.max_images)
        try:
            for index, page in enumerate(pages):  # (on past a full allowance: the images beyond it are counted)
                scanned = not texts[index] and page.number not in failed
                shown, failures = _page_images(reader.pages[index], page, scanned, images, seen, walked)
                picture = drawer.draw(index) if scanned and not shown and not images.full else None
                if picture is not None and images.wants(f"page {page.number}", *picture.size):
                    images.add_decoded(picture, picture.tobytes(), f"page {page.number}", page=page.number,
                                       start=page.start, end=page.end, scanned_page=True)
                    continue
                for name, reason in failures:
                    images.skip(name, reason)
        finally:
            drawer.close()
        return ExtractedDocument(text=text, file_type=self.file_type, title=_title(reader), pages=pages,
                                 images=images.finish(), warnings=warnings)


def _page_images(pdf_page: PageObject, page: Page, scanned: bool, images: EmbeddedImages,
                 seen: set[tuple[int, int] | int], walked: dict[object, int]) -> tuple[bool, list[tuple[str, str]]]:
    """Keep the images a page draws, decoded by pypdf. Returns whether the page shows a picture (one kept, or seen
    on an earlier page, or refused for its size or the document's allowance), and the images that failed to decode
    (JBIG2 without jbig2dec, say) with the reason: a scanned page without a picture is drawn by pdfium instead.

    Only the images its content draws belong to a page: resources shared by many pages name them all, and a
    scanned page's picture credited to the text page before it was never read by OCR."""
    key = _content_key(pdf_page)
    if key is not None:  # pages drawn from the same content and resources draw the same images: searched once
        if key in walked:
            return True, []
        walked[key] = 0
    shown, failures = False, []
    for ordinal, (path, xobject) in enumerate(_image_xobjects(pdf_page, walked, _drawn(pdf_page)), 1):
        reference = xobject.indirect_reference
        identity = (reference.idnum, reference.generation) if reference is not None else id(xobject)
        if identity in seen:
            shown = True
            continue
        seen.add(identity)
        name, size = f"page {page.number} image {ordinal}", _size(xobject)
        if not images.wants(name, *size):  # a decoration (or a strip of a scan cut in strips) is not a picture;
            shown = shown or min(size) >= images.limits.min_side  # one refused for its size or the allowance is
            continue
        # pypdf signals unsupported or broken image data with many exception types, as it does for pages.
        try:
            if "/DCTDecode" in _filters(xobject):  # a JPEG, which pypdf decodes without the image files' checks
                refuse_many_scans(xobject.get_data())
            found = pdf_page.images[path if len(path) > 1 else path[0]]
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except ImageError as error:  # refused, not failed: pdfium must not decode it either
            images.skip(name, str(error))
            shown = True
            continue
        except Exception as error:
            failures.append((name, f"cannot decode: {_describe(error)}"))
            continue
        images.add_decoded(found.image, found.data, name, page=page.number, start=page.start, end=page.end,
                           scanned_page=scanned)
        shown = True
    return shown, failures


def _content_key(page: PageObject) -> tuple[object, object] | None:
    """What a page's text depends on, as a key equal for pages that share their content stream(s) and resources;
    None when it cannot be told (the page is then parsed on its own)."""
    try:
        return _reference(page.raw_get("/Contents")), _reference(page.raw_get("/Resources"))
    except Exception:  # a missing or broken entry: no sharing to exploit
        return None


def _reference(value: object) -> object:
    """An indirect object's number, the numbers of an array of them, else the value's text (small direct dicts)."""
    if isinstance(value, IndirectObject):
        return value.idnum, value.generation
    if isinstance(value, list):
        return tuple(_reference(item) for item in value)
    return repr(value)


def _image_xobjects(container: DictionaryObject, walked: dict[object, int], drawn: list[str] | None,
                    path: tuple[str, ...] = (), depth: int = 0) -> Iterator[tuple[list[str], StreamObject]]:
    """(resource path, image XObject) for each image a page or form draws (``drawn``; every one in its resources
    when its content cannot be read), in the forms it draws too, each form searched again only where it is
    reached less deep than before (``walked``: what a shallower search reaches, a deeper one does not): a form
    naming itself thirty times was walked 30^8 times, 1.4 KB that never finished."""
    try:
        xobjects = container["/Resources"]["/XObject"]
        names = list(xobjects) if drawn is None else [name for name in drawn if name in xobjects]
        entries = [(name, xobjects[name]) for name in names]
    except MemoryError:  # the file is over the memory budget: that is the reason
        raise
    except Exception:  # no resources, no XObjects, or a broken dictionary: no images here
        return
    for name, xobject in entries:
        if not isinstance(xobject, StreamObject):
            continue
        subtype = xobject.get("/Subtype")
        if subtype == "/Image":
            yield [*path, name], xobject
        elif subtype == "/Form" and depth < _MAX_FORM_DEPTH:
            form = xobject.indirect_reference
            identity = ("form", form.idnum, form.generation) if form is not None else id(xobject)
            if walked.get(identity, _MAX_FORM_DEPTH + 1) > depth + 1:
                walked[identity] = depth + 1
                yield from _image_xobjects(xobject, walked, _drawn(xobject), (*path, name), depth + 1)


def _drawn(container: DictionaryObject) -> list[str] | None:
    """The XObject names a page's or form's content draws (its ``Do`` operators), each once, in order; None when
    the content cannot be read. A regular expression over the content, not pypdf's parser, which takes seconds
    on a page of large drawings."""
    try:
        if isinstance(container, StreamObject):  # a form: its own data is its content
            content = container.get_data()
        else:
            streams = container.get("/Contents")
            streams = streams.get_object() if streams is not None else []
            parts = streams if isinstance(streams, list) else [streams]
            content = b"\n".join(part.get_object().get_data() for part in parts)
    except MemoryError:  # the file is over the memory budget: that is the reason
        raise
    except Exception:  # broken or undecodable content: its images are not told apart
        return None
    return [_name(name) for name in dict.fromkeys(match.group(1) for match in _DRAW.finditer(content))]


def _name(raw: bytes) -> str:
    """A name as pypdf reads it ("/Im1"): plain ASCII directly, escapes (#20) and other bytes through pypdf."""
    if raw.isascii() and b"#" not in raw:
        return "/" + raw.decode("ascii")
    return NameObject.read_from_stream(io.BytesIO(b"/" + raw), None)


def _filters(xobject: StreamObject) -> list[str]:
    """The names of a stream's filters (one name or an array of them)."""
    value = xobject.get("/Filter")
    return [str(item) for item in value] if isinstance(value, list) else [str(value)] if value is not None else []


def _size(xobject: StreamObject) -> tuple[int, int]:
    """An image XObject's declared width and height; (0, 0) when they are missing or not numbers."""
    try:
        return int(xobject["/Width"]), int(xobject["/Height"])
    except (KeyError, TypeError, ValueError):
        return 0, 0


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
