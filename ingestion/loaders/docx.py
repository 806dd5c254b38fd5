"""Word (.docx) files through python-docx: body paragraphs and tables in document order."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from docx import Document
from docx.oxml.ns import qn
from lxml.etree import _Element

from ingestion.loaders.base import Loader, LoadError, clean_text
from kb.types import ExtractedDocument

_P, _TBL, _TR, _TC = qn("w:p"), qn("w:tbl"), qn("w:tr"), qn("w:tc")
_SDT, _SDT_CONTENT, _CUSTOM_XML = qn("w:sdt"), qn("w:sdtContent"), qn("w:customXml")
_TEXTBOX = qn("w:txbxContent")
# Not shown as text: paragraph/run properties (their w:tab is a tab stop), deleted revisions, and the
# fallback copy of a drawing (its text box repeats the one in mc:Choice).
_SKIPPED = frozenset({qn("w:pPr"), qn("w:rPr"), qn("w:del"), qn("w:moveFrom"), qn("w:instrText"),
                      "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"})
_CHARACTERS = {qn("w:tab"): "\t", qn("w:ptab"): "\t", qn("w:br"): "\n", qn("w:cr"): "\n",
               qn("w:noBreakHyphen"): "-"}
_T = qn("w:t")
_STYLE_ID = qn("w:val")
MAX_EXPANDED_BYTES = 512 * 2**20
_STREAM_REPR = re.compile(r"file '<_io\.BytesIO object at 0x[0-9a-f]+>'")  # python-docx names the stream


class DocxLoader(Loader):
    """Paragraphs (headings included) as blank-line-separated blocks; a table row per line, cells ' | '.

    Text boxes follow the paragraph that anchors them. Headers, footers, footnotes and comments are not part
    of the body and are left out. The title is the core properties' title, else the first Title or Heading
    paragraph.
    """

    file_type = "docx"

    def extract(self, path: Path, data: bytes) -> ExtractedDocument:
        _refuse_zip_bomb(data)
        # python-docx reports a broken package with many exception types (zip, XML, missing parts).
        try:
            document = Document(io.BytesIO(data))
            title = (document.core_properties.title or "").strip() or None
            heading_styles = {style.style_id for style in document.styles if _is_heading(style.name)}
        except Exception as error:
            reason = _STREAM_REPR.sub("the file", str(error)) or type(error).__name__
            raise LoadError(f"corrupt DOCX: {reason}") from error
        body = document.element.body
        text = clean_text("\n\n".join(block for block in _blocks(body) if block.strip()))
        return ExtractedDocument(
            text=text, file_type=self.file_type, title=title or _first_heading(body, heading_styles)
        )


def _refuse_zip_bomb(data: bytes) -> None:
    """A DOCX is a zip: refuse one that would inflate past ``MAX_EXPANDED_BYTES`` before anything unpacks it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable zip: python-docx reports it as corrupt
    if expanded > MAX_EXPANDED_BYTES:
        raise LoadError(f"DOCX would expand to {expanded / 2**20:.0f} MB (a zip bomb?); the limit is "
                        f"{MAX_EXPANDED_BYTES / 2**20:.0f} MB")


def _is_heading(name: str | None) -> bool:
    lowered = (name or "").lower()
    return lowered == "title" or lowered.startswith("heading")


def _first_heading(body: _Element, heading_styles: set[str]) -> str | None:
    for paragraph in body.iterchildren(_P):
        style = paragraph.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
        if style is not None and style.get(_STYLE_ID) in heading_styles:
            text = _paragraph(paragraph, [])
            if text.strip():
                return text
    return None


def _blocks(container: _Element) -> Iterator[str]:
    """Paragraph texts and tables of a body, cell or text box, in document order."""
    for child in container.iterchildren():
        if child.tag == _P:
            boxes: list[_Element] = []
            yield _paragraph(child, boxes)
            for box in boxes:
                yield from _blocks(box)
        elif child.tag == _TBL:
            yield _table(child)
        elif child.tag == _SDT:
            content = child.find(_SDT_CONTENT)
            if content is not None:
                yield from _blocks(content)
        elif child.tag == _CUSTOM_XML:
            yield from _blocks(child)


def _paragraph(element: _Element, boxes: list[_Element]) -> str:
    """The visible text of a paragraph; text boxes met inside it are appended to ``boxes``."""
    parts: list[str] = []
    for child in element.iterchildren():
        if child.tag in _SKIPPED:
            continue
        if child.tag == _T:
            parts.append(child.text or "")
        elif child.tag in _CHARACTERS:
            parts.append(_CHARACTERS[child.tag])
        elif child.tag == _TEXTBOX:
            boxes.append(child)
        else:
            parts.append(_paragraph(child, boxes))
    return "".join(parts)


def _table(table: _Element) -> str:
    """One line per row; a cell's paragraphs (and nested tables) flattened onto the line."""
    rows: list[str] = []
    for row in table.iterchildren(_TR):
        cells = (" ".join(" ".join(_blocks(cell)).split()) for cell in row.iterchildren(_TC))
        line = " | ".join(cell for cell in cells if cell)
        if line:
            rows.append(line)
    return "\n".join(rows)
