"""Which loader reads a file, chosen by its lower-cased suffix (and, for Office 97-2003 names, by its first bytes:
Word saves RTF under .doc, many business systems export HTML or Office 2007 files as .xls, and a renamed .pptx is
still a deck). WPS Office's own names (.wps, .et, .dps and their templates) are read as the Office 97-2003 files they
hold, under the same rule."""

from __future__ import annotations

from pathlib import Path

from ingestion.loaders.base import Limits, Loader, OnKept
from ingestion.loaders.delimited import DelimitedLoader
from ingestion.loaders.doc import DocLoader
from ingestion.loaders.docx import DocxLoader
from ingestion.loaders.eml import EmlLoader, MboxLoader
from ingestion.loaders.epub import EpubLoader
from ingestion.loaders.html import HtmlLoader
from ingestion.loaders.image import ImageLoader
from ingestion.loaders.images import SUFFIXES as IMAGE_SUFFIXES
from ingestion.loaders.markdown import MarkdownLoader
from ingestion.loaders.msg import MsgLoader
from ingestion.loaders.odf import OdfLoader
from ingestion.loaders.pdf import PdfLoader
from ingestion.loaders.ppt import PptLoader
from ingestion.loaders.pptx import PptxLoader
from ingestion.loaders.rtf import RtfLoader
from ingestion.loaders.text import TextLoader
from ingestion.loaders.xls import XlsLoader
from ingestion.loaders.xlsx import XlsxLoader
from kb.types import ExtractedDocument

_OLE = bytes.fromhex("d0cf11e0a1b11ae1")  # the signature of a compound file, Office 97-2003's container
_MARKUP = (b"<html", b"<!doctype html", b"<table", b"<?xml", b"<meta", b"<head", b"<body")


class _ByContent(Loader):
    """An Office 97-2003 name whose bytes are another format: read by the loader for what they are (an RTF, HTML,
    MHTML or Office 2007 file, or for a workbook any other text, as delimited text), as Word and Excel open it; an
    OLE file, or one none of these, by ``native``."""

    def __init__(self, native: Loader, zipped: Loader, delimited: bool = False) -> None:
        self.native = native
        self.zipped = zipped
        self.delimited = delimited  # text is read as delimited text (an .xls a system exported)
        self.file_type = native.file_type

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        return self._reader(data).extract(path, data, limits, root, on_kept)

    def _reader(self, data: bytes) -> Loader:
        start = data[:1024]
        wide = start.startswith((b"\xff\xfe", b"\xfe\xff"))
        if wide:  # UTF-16, as Excel saves "Unicode" HTML and text
            start = start.decode("utf-16", "ignore").encode("ascii", "ignore")
        start = start.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if data.startswith(_OLE):
            return self.native
        if start.startswith(b"{\\rtf"):
            return _RTF
        if data.startswith(b"PK\x03\x04"):
            return self.zipped
        if start.startswith(_MARKUP):
            return _HTML
        if start.startswith(b"mime-version:"):  # a web page in one file (MHTML), as Excel saves one
            return _LOADERS[".eml"]
        text = wide or b"\0" not in data[:4096]  # a binary file holds NULs in its first bytes
        return _CSV if self.delimited and text else self.native


_TEXT, _MARKDOWN, _HTML, _RTF, _PPTX = TextLoader(), MarkdownLoader(), HtmlLoader(), RtfLoader(), PptxLoader()
_CSV = DelimitedLoader("csv")
_DOCX, _XLSX = DocxLoader(), XlsxLoader()
_DOC = _ByContent(DocLoader(), _DOCX)
_PPT = _ByContent(PptLoader(), _PPTX)
_XLT = _ByContent(XlsLoader(), _XLSX)
_LOADERS: dict[str, Loader] = {
    ".txt": _TEXT,
    ".text": _TEXT,
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".htm": _HTML,
    ".html": _HTML,
    ".xhtml": _HTML,
    ".pdf": PdfLoader(),
    ".doc": _DOC,
    ".docx": _DOCX,
    ".docm": _DOCX,  # Word 2007's macro-enabled document, and its templates: the macros are never run
    ".dotx": _DOCX,
    ".dotm": _DOCX,
    ".ppt": _PPT,
    ".pps": _PPT,  # a PowerPoint 97-2003 show (the deck opens as a slide show)
    ".pptx": _PPTX,
    ".pptm": _PPTX,  # PowerPoint 2007's macro-enabled deck, its shows and its templates
    ".ppsx": _PPTX,
    ".ppsm": _PPTX,
    ".potx": _PPTX,
    ".potm": _PPTX,
    ".xls": _ByContent(XlsLoader(), _XLSX, delimited=True),
    ".xlt": _XLT,  # an Excel 97-2003 template
    ".xlsx": _XLSX,
    ".xlsm": _XLSX,
    ".xltx": _XLSX,  # Excel 2007's templates
    ".xltm": _XLSX,
    ".odt": OdfLoader("odt"),
    ".ods": OdfLoader("ods"),
    ".odp": OdfLoader("odp"),
    ".epub": EpubLoader(),
    ".rtf": _RTF,
    ".csv": _CSV,
    ".tsv": DelimitedLoader("tsv", "\t"),
    # WPS Office (金山 WPS), the office suite of many Chinese companies: its Writer, Spreadsheets and Presentation
    # save Word, Excel and PowerPoint 97-2003 files under names of their own (and its templates .wpt, .ett, .dpt).
    ".wps": _DOC,
    ".wpt": _DOC,
    ".et": _XLT,
    ".ett": _XLT,
    ".dps": _PPT,
    ".dpt": _PPT,
}
_IMAGE = ImageLoader()
_LOADERS.update((suffix, _IMAGE) for suffix in IMAGE_SUFFIXES)


# Mailboxes mail programs write without a suffix: Apple Mail's export (``Inbox.mbox/mbox``) and Thunderbird's
# folders of a profile (``Mail/Local Folders/Inbox``, beside ``Inbox.msf``, its index), under their usual names.
MAILBOX_NAMES = frozenset({"mbox", "inbox", "sent", "drafts", "trash", "archives", "templates", "junk",
                           "unsent messages"})


def loader_for(path: Path | str) -> Loader | None:
    """The loader for ``path``'s suffix, or None when the format is not supported (the caller skips it); an
    e-mail's attachment, whose name says nothing else, is chosen so."""
    return _LOADERS.get(Path(path).suffix.lower())


def file_loader(path: Path | str) -> Loader | None:
    """The loader for a file in a folder: by its suffix, and a mailbox's name without one (``MAILBOX_NAMES``: an
    attachment named "Templates" is a text file, not Thunderbird's folder)."""
    if not Path(path).suffix and Path(path).name.casefold() in MAILBOX_NAMES:
        return _LOADERS[".mbox"]
    return loader_for(path)


# An e-mail's attachments are read by the loaders for their names.
_LOADERS.update({".eml": EmlLoader(loader_for), ".mbox": MboxLoader(loader_for), ".msg": MsgLoader(loader_for)})
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
