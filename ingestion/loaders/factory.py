"""Which loader reads a file, chosen by its lower-cased suffix."""

from __future__ import annotations

from pathlib import Path

from ingestion.loaders.base import Loader
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
from ingestion.loaders.pptx import PptxLoader
from ingestion.loaders.rtf import RtfLoader
from ingestion.loaders.text import TextLoader
from ingestion.loaders.xls import XlsLoader
from ingestion.loaders.xlsx import XlsxLoader

_TEXT, _MARKDOWN, _HTML = TextLoader(), MarkdownLoader(), HtmlLoader()
_LOADERS: dict[str, Loader] = {
    ".txt": _TEXT,
    ".text": _TEXT,
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".htm": _HTML,
    ".html": _HTML,
    ".xhtml": _HTML,
    ".pdf": PdfLoader(),
    ".doc": DocLoader(),
    ".docx": DocxLoader(),
    ".pptx": PptxLoader(),
    ".xls": XlsLoader(),
    ".xlsx": XlsxLoader(),
    ".xlsm": XlsxLoader(),
    ".odt": OdfLoader("odt"),
    ".ods": OdfLoader("ods"),
    ".odp": OdfLoader("odp"),
    ".epub": EpubLoader(),
    ".rtf": RtfLoader(),
}
_IMAGE = ImageLoader()
_LOADERS.update((suffix, _IMAGE) for suffix in IMAGE_SUFFIXES)


def loader_for(path: Path | str) -> Loader | None:
    """The loader for ``path``'s suffix, or None when the format is not supported (the caller skips it)."""
    return _LOADERS.get(Path(path).suffix.lower())


# An e-mail's attachments are read by the loaders for their names.
_LOADERS.update({".eml": EmlLoader(loader_for), ".mbox": MboxLoader(loader_for), ".msg": MsgLoader(loader_for)})
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
