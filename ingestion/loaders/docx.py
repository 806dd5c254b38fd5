"""Word (.docx) files through python-docx: body paragraphs and tables in document order."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from docx.document import Document
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.opc.package import OpcPackage
from docx.opc.part import Part, PartFactory, XmlPart
from docx.opc.pkgreader import PackageReader
from docx.oxml import parse_xml
from docx.oxml.ns import qn
from docx.package import Package
from docx.parts.document import DocumentPart
from lxml.etree import _Element

from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, TextCursor, clean_text
from ingestion.loaders.images import EmbeddedImages, describe_error, is_figure_caption, picture_span
from ingestion.loaders.ooxml import opened_despite_broken_parts, refuse_bombs
from kb.types import ExtractedDocument, ExtractedImage

_P, _TBL, _TR, _TC = qn("w:p"), qn("w:tbl"), qn("w:tr"), qn("w:tc")
_SDT, _SDT_CONTENT, _CUSTOM_XML = qn("w:sdt"), qn("w:sdtContent"), qn("w:customXml")
_TEXTBOX = qn("w:txbxContent")
_DRAWING, _DOC_PR, _BLIP, _EMBED = qn("w:drawing"), qn("wp:docPr"), qn("a:blip"), qn("r:embed")
# Pictures in VML, as Word 2003 and compatibility mode write them: the shape's alt text, the picture's title, and the
# relationship that names the picture's part. (Not an embedded object's preview, w:object: an equation's or a
# drawing's metafile, which is not read, and would make every old document one read in part.)
_VML, _OFFICE = "urn:schemas-microsoft-com:vml", "urn:schemas-microsoft-com:office:office"
_PICT, _IMAGEDATA, _VML_TITLE = qn("w:pict"), f"{{{_VML}}}imagedata", f"{{{_OFFICE}}}title"
_DRAWINGS = frozenset({_DRAWING, _PICT})  # what holds pictures in a paragraph
_PICTURE_PARTS = {_BLIP: _EMBED, _IMAGEDATA: qn("r:id")}  # a picture -> its attribute naming its part
# Not shown as text: paragraph/run properties (their w:tab is a tab stop), deleted revisions, and the
# fallback copy of a drawing (its text box repeats the one in mc:Choice).
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_NOT_OWN = frozenset({_TEXTBOX, _FALLBACK, *_DRAWINGS})  # inside a drawing, what holds pictures not its own
_SKIPPED = frozenset({qn("w:pPr"), qn("w:rPr"), qn("w:del"), qn("w:moveFrom"), qn("w:instrText"), _FALLBACK})
_CHARACTERS = {qn("w:tab"): "\t", qn("w:ptab"): "\t", qn("w:br"): "\n", qn("w:cr"): "\n",
               qn("w:noBreakHyphen"): "-"}
_T = qn("w:t")
_STYLE_ID = qn("w:val")
_ID, _TYPE, _CUSTOM_MARK = qn("w:id"), qn("w:type"), qn("w:customMarkFollows")
_TRUE = frozenset({"1", "true", "on"})  # an OOXML on/off value that is on
# A footnote's or endnote's reference -> the note it names; separators are the notes' rules, not notes.
_REFERENCES = {qn("w:footnoteReference"): qn("w:footnote"), qn("w:endnoteReference"): qn("w:endnote")}
_NOTE_PARTS = (RELATIONSHIP_TYPE.FOOTNOTES, RELATIONSHIP_TYPE.ENDNOTES)
_SEPARATORS = frozenset({"separator", "continuationSeparator", "continuationNotice"})
_NOTE_START = "\x00"  # where a note's text begins until it is given its space (XML text never holds U+0000)
_BEFORE_NOTE = re.compile("(\\s?)\x00")
# Word's macro-enabled documents and its templates (.docm, .dotx, .dotm) hold the main part of a .docx under content
# types of their own, which python-docx's Document() refuses: that part is read as a document's all the same.
PartFactory.part_type_for.update(dict.fromkeys((
    "application/vnd.ms-word.document.macroEnabled.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    "application/vnd.ms-word.template.macroEnabledTemplate.main+xml"), DocumentPart))



def _walk_parts(reader: Any, relationships: Any) -> Iterator[tuple[Any, ...]]:
    """python-docx's walk over a package's parts along their relationships, in its order (each part, then the parts
    it relates to, depth first), with a set of the parts seen and a stack: its list made 20,000 parts and 100,000
    relationships take 47 s, and its recursion could not follow a chain of parts 1,000 long."""
    seen: set[str] = set()
    stack = [iter(relationships)]
    while stack:
        relationship = next(stack[-1], None)
        if relationship is None:
            stack.pop()
        elif not relationship.is_external and (name := relationship.target_partname) not in seen:
            seen.add(name)
            related = PackageReader._srels_for(reader, name)
            yield name, reader.blob_for(name), relationship.reltype, related
            stack.append(iter(related))


def _relationships(package: OpcPackage) -> Iterator[Any]:
    """python-docx's walk over every relationship of a package, which it makes as it opens one (for its pictures),
    in its order, with a set of the parts seen and a stack, for the reasons of ``_walk_parts``."""
    seen: set[int] = set()
    stack = [iter(package.rels.values())]
    while stack:
        relationship = next(stack[-1], None)
        if relationship is None:
            stack.pop()
            continue
        yield relationship
        if not relationship.is_external and id(part := relationship.target_part) not in seen:
            seen.add(id(part))
            stack.append(iter(part.rels.values()))


def _replace(owner: type, name: str, replacement: Any) -> None:
    """Put ``replacement`` in place of python-docx's ``owner.name``: a python-docx without it (a version that renamed
    its walks) fails at import, rather than being left with walks of its own that no one has measured."""
    if not hasattr(owner, name):
        raise ImportError(f"this python-docx has no {owner.__name__}.{name} to replace: install python-docx 1.x")
    setattr(owner, name, replacement)


_replace(PackageReader, "_walk_phys_parts", staticmethod(_walk_parts))
_replace(OpcPackage, "iter_rels", _relationships)


class DocxLoader(Loader):
    """Paragraphs (headings included) as blank-line-separated blocks; a table row per line, cells ' | '.

    Text boxes follow the paragraph that anchors them; a footnote's or endnote's text (and its pictures) stands where
    its reference does (as an OpenDocument note's). Headers, footers and comments are not part of the body and are left out. The title
    is the core properties' title, else the first Title or Heading paragraph. Pictures (inline or floating) come
    with their description as alt text, the next paragraph as caption when it is one, and the span of their
    paragraph and caption.
    """

    file_type = "docx"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        refuse_bombs(data, limits.max_chars, "DOCX")
        warnings: list[str] = []
        # python-docx reports a broken package with many exception types (zip, XML, missing parts).
        try:
            document = opened_despite_broken_parts(data, _opened, warnings)
            title = (document.core_properties.title or "").strip() or None
            heading_styles = {style.style_id for style in document.styles if _is_heading(style.name)}
            caption_styles = {style.style_id for style in document.styles if (style.name or "").lower() == "caption"}
        except (LoadError, MemoryError):  # (a memory error: the file is over the memory budget, the reason)
            raise
        except Exception as error:
            raise LoadError(f"corrupt DOCX: {describe_error(error)}") from error
        body = document.element.body
        notes = _Notes(document.part, body, warnings)
        blocks = [block if block.text or block.drawings else _EMPTY for block in _blocks(body, notes)]
        text = clean_text("\n\n".join(block.text for block in blocks if block.text.strip()))
        limits.check_chars(len(text))
        found = EmbeddedImages(limits, warnings, root, on_kept)
        images = _pictures(document.part, blocks, text, caption_styles, found, notes.owners)
        title = title or _first_heading(body, heading_styles)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, images=images, warnings=warnings)


def _opened(data: bytes) -> Document:
    """The Word document in a package (any of its kinds); ``LoadError`` for a package of something else."""
    part = Package.open(io.BytesIO(data)).main_document_part
    if not isinstance(part, DocumentPart):
        raise LoadError(f"not a Word document: its main part is {part.content_type}")
    return part.document


class _Block(NamedTuple):
    """A paragraph or table of the body: its text, its element, and the drawings inside it; for a table, each row's
    line ("" for a row without text) and the row of each drawing."""

    text: str
    element: _Element | None
    drawings: list[_Element]
    lines: tuple[str, ...] = ()
    drawing_rows: tuple[int, ...] = ()


_EMPTY = _Block("", None, [])  # every empty paragraph: nothing of it is kept


class _Notes:
    """The footnotes and endnotes the body references, by kind and id. Each is read once, at its first reference (a
    note named many times, as only a hostile file names one, is not copied each time), and without the references
    it holds itself (a chain of notes naming notes would otherwise nest as deep as it is long). Only the notes
    referenced are indexed, by their place in their part (a proxy held for each of two million notes took 2 GB), and
    each kind's part is parsed once (200 relationships naming one part parsed it 200 times: 216 s)."""

    def __init__(self, part: Part | None = None, body: _Element | None = None,
                 warnings: list[str] | None = None) -> None:
        self.parts: list[_Element] = []
        self.sources: list[Part] = []  # the part each of ``parts`` was read from: its pictures' relationships
        self.owners: dict[_Element, Part] = {}  # the part whose relationships a note's drawing names pictures by
        self.notes: dict[tuple[str, str], tuple[int, int]] = {}  # (tag, id) -> (its part, its place in the part)
        wanted = set() if body is None else {(_REFERENCES[reference.tag], reference.get(_ID, ""))
                                             for reference in body.iter(*_REFERENCES)}
        kinds: set[str] = set()
        for relationship in part.rels.values() if part is not None and wanted else ():
            if relationship.reltype not in _NOTE_PARTS or relationship.is_external or relationship.reltype in kinds:
                continue
            kinds.add(relationship.reltype)
            target = relationship.target_part
            try:
                root = target.element if isinstance(target, XmlPart) else parse_xml(target.blob)
            except Exception as error:  # a broken notes part loses its notes, not the document
                if warnings is not None:
                    warnings.append(f"its notes ({target.partname}) were not read: {describe_error(error)}")
                continue
            for place, note in enumerate(root.iterchildren()):
                key = (note.tag, note.get(_ID, ""))
                if key in wanted and note.get(_TYPE) not in _SEPARATORS:
                    self.notes.setdefault(key, (len(self.parts), place))
            self.parts.append(root)
            self.sources.append(target)

    def text(self, reference: _Element, drawings: list[_Element]) -> str:
        """The text of the note ``reference`` names, after ``_NOTE_START``; empty when it has none or was read. Its
        drawings are appended to ``drawings``, those of the paragraph holding the reference."""
        found = self.notes.pop((_REFERENCES[reference.tag], reference.get(_ID, "")), None)
        if found is None:
            return ""
        blocks = list(_blocks(self.parts[found[0]][found[1]], _NO_NOTES))
        for block in blocks:
            self.owners.update(dict.fromkeys(block.drawings, self.sources[found[0]]))
            drawings.extend(block.drawings)
        text = " ".join(" ".join(block.text for block in blocks).split())
        return _NOTE_START + text if text else ""


def _spaced(text: str) -> str:
    """A paragraph's text with one space before each note (none added after a blank)."""
    return _BEFORE_NOTE.sub(lambda found: found.group(1) or " ", text) if _NOTE_START in text else text


_NO_NOTES = _Notes()


def _is_heading(name: str | None) -> bool:
    lowered = (name or "").lower()
    return lowered == "title" or lowered.startswith("heading")


def _first_heading(body: _Element, heading_styles: set[str]) -> str | None:
    for paragraph in body.iterchildren(_P):
        style = paragraph.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
        if style is not None and style.get(_STYLE_ID) in heading_styles:
            text = _paragraph(paragraph, [], _NO_NOTES)
            if text.strip():
                return text
    return None


def _blocks(container: _Element, notes: _Notes, line: _Line | None = None) -> Iterator[_Block]:
    """Paragraphs and tables of a body, cell, text box or note, in document order; inside a table's ``line``, a
    nested table's rows are put onto it instead."""
    for child in container.iterchildren():
        if child.tag == _P:
            found: list[_Element] = []
            text = _spaced(_paragraph(child, found, notes))
            yield _Block(text, child, [element for element in found if element.tag in _DRAWINGS])
            for box in found:
                if box.tag == _TEXTBOX:
                    yield from _blocks(box, notes, line)
        elif child.tag == _TBL and line is not None:
            for row in child.iterchildren(_TR):
                _flatten_row(row, notes, line)
        elif child.tag == _TBL:
            yield _table(child, notes)
        elif child.tag == _SDT:
            content = child.find(_SDT_CONTENT)
            if content is not None:
                yield from _blocks(content, notes, line)
        elif child.tag == _CUSTOM_XML:
            yield from _blocks(child, notes, line)


def _paragraph(element: _Element, found: list[_Element], notes: _Notes) -> str:
    """The visible text of a paragraph, its notes' where they are referenced; text boxes and drawings met inside
    it are appended to ``found``."""
    parts: list[str] = []
    waiting = ""  # the text of a note whose reference a mark of the writer's own follows: read after the mark
    for child in element.iterchildren():
        if child.tag in _SKIPPED:
            continue
        if child.tag == _T:
            parts += [child.text or "", waiting]
            waiting = ""
        elif child.tag in _CHARACTERS:
            parts.append(_CHARACTERS[child.tag])
        elif child.tag in _REFERENCES and child.get(_CUSTOM_MARK) in _TRUE:
            waiting += notes.text(child, found)
        elif child.tag in _REFERENCES:
            parts.append(notes.text(child, found))
        elif child.tag == _TEXTBOX:
            found.append(child)
        else:
            if child.tag in _DRAWINGS:
                found.append(child)
            parts.append(_paragraph(child, found, notes))
    return "".join(parts) + waiting


class _Line(NamedTuple):
    """A table row being flattened: its cells' texts (and "|" between cells) and drawings so far, appended to in
    place."""

    pieces: list[str]
    drawings: list[_Element]


def _table(table: _Element, notes: _Notes) -> _Block:
    """One line per row; a cell's paragraphs (and nested tables) flattened onto the line."""
    lines: list[str] = []
    drawings: list[_Element] = []
    drawing_rows: list[int] = []
    for row in table.iterchildren(_TR):
        line = _Line([], drawings)
        _flatten_row(row, notes, line)
        drawing_rows += [len(lines)] * (len(drawings) - len(drawing_rows))
        lines.append(" ".join(line.pieces))
    return _Block("\n".join(line for line in lines if line), table, drawings, tuple(lines), tuple(drawing_rows))


def _flatten_row(row: _Element, notes: _Notes, line: _Line) -> None:
    """Appends a row's cells to ``line``, "|" between those with text. A nested table's rows go onto the same line
    and are never joined on their own: joined again at every level, 83 tables nested around 37 MB of text took
    31 s before the text's limit refused it."""
    start = len(line.pieces)
    for cell in row.iterchildren(_TC):
        separated = len(line.pieces) > start
        if separated:
            line.pieces.append("|")
        mark = len(line.pieces)
        for block in _blocks(cell, notes, line):
            if text := " ".join(block.text.split()):
                line.pieces.append(text)
            line.drawings.extend(block.drawings)
        if separated and len(line.pieces) == mark:
            line.pieces.pop()


def _pictures(part: Part, blocks: list[_Block], text: str, caption_styles: set[str], images: EmbeddedImages,
              owners: dict[_Element, Part]) -> list[ExtractedImage]:
    """The pictures of the body, each with its alt text, caption and span in ``text``; a drawing of a note names its
    picture among the relationships of the note's part (``owners``), any other among the document's.

    Pictures sharing one image part are hashed once and decoded once; each repeat counts against the limit.
    """
    located = _located(blocks, text) if any(block.drawings for block in blocks) else []
    hashes: dict[str, str] = {}  # image part name -> hash of its bytes
    before: tuple[int, int] | None = None  # the span of the last block with text before the current one
    for index, block in enumerate(blocks):
        if block.drawings and images.full:
            images.beyond_limits(sum(1 for drawing in block.drawings for _ in _own_pictures(drawing)))
        elif block.drawings:
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            caption = following if following is not None and _is_caption(following, caption_styles) else None
            rows = _row_spans(block, text, located[index])
            for drawing, row in zip(block.drawings, rows, strict=True):
                start, end = picture_span(row or located[index], located[index + 1] if caption else None, before)
                properties = drawing.find(f".//{_DOC_PR}")
                described = "" if properties is None else properties.get("descr") or properties.get("title") or ""
                pictures = _own_pictures(drawing)
                for picture in pictures:
                    if images.full:  # (the rest are counted, not looked up)
                        images.beyond_limits(1 + sum(1 for _ in pictures))
                        break
                    alt = _alt_text(described, picture)
                    relationships = owners.get(drawing, part).related_parts
                    related = relationships.get(picture.get(_PICTURE_PARTS[picture.tag], ""))
                    if related is None:
                        images.skip(f"in paragraph {index + 1}", "linked, or missing: not in the file")
                        continue
                    name = related.partname.lstrip("/")
                    if isinstance(related, XmlPart):  # its bytes are made again from its XML on every read
                        images.skip(name, "names a part of the document's XML, not a picture")
                        continue
                    if name not in hashes:
                        hashes[name] = hashlib.sha256(related.blob).hexdigest()
                    images.add_bytes(related.blob, name, sha256=hashes[name], start=start, end=end, alt=alt,
                                     caption=caption and " ".join(caption.text.split()))
        if located and located[index] is not None:
            before = located[index]
    return images.finish()


def _own_pictures(drawing: _Element) -> Iterator[_Element]:
    """The pictures of a drawing or VML shape (a group holds several), in order; not those in its text boxes, which
    are read with the text box's own paragraphs (the anchor paragraph took them, with the text box's alt text), nor
    the fallback copies of its pictures, nor those of a drawing inside it, a drawing of its own (250 drawings nested
    around 100,000 pictures gave each picture 250 times: 94 s)."""
    stack = list(reversed(drawing))
    while stack:
        element = stack.pop()
        if element.tag in _PICTURE_PARTS:
            yield element
        elif element.tag not in _NOT_OWN:
            stack.extend(reversed(element))


def _alt_text(described: str, picture: _Element) -> str | None:
    """A picture's alt text: its drawing's description (or title), ``described``; a VML picture's shape's alt text,
    or its own title."""
    if picture.tag == _IMAGEDATA:
        shape = picture.getparent()
        described = (shape.get("alt") if shape is not None else None) or picture.get(_VML_TITLE) or ""
    return described.strip() or None


def _row_spans(block: _Block, text: str, located: tuple[int, int] | None) -> list[tuple[int, int] | None]:
    """For each drawing of ``block``, the span of the table row holding it (a row without text, or a paragraph:
    None), its rows found in order within the table's span ``located``."""
    if not block.drawing_rows or located is None:
        return [None] * len(block.drawings)
    cursor = TextCursor(text)
    cursor.start = cursor.end = located[0]
    spans = [cursor.find(line, until=located[1]) if line else None for line in block.lines]  # (each search bounded)
    return [spans[row] for row in block.drawing_rows]


def _located(blocks: list[_Block], text: str) -> list[tuple[int, int] | None]:
    """The span of each block in ``text`` (None for a block without text), each found after the one before, so
    that a block repeating an earlier one's text lands on its own occurrence."""
    cursor = TextCursor(text)
    return [cursor.find(block.text) if block.text.strip() else None for block in blocks]


def _is_caption(block: _Block, caption_styles: set[str]) -> bool:
    if block.element is None:
        return False
    style = block.element.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
    if style is not None and style.get(_STYLE_ID) in caption_styles:
        return True
    return is_figure_caption(block.text)

