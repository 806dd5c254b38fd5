"""OpenDocument files (``.odt`` text, ``.ods`` spreadsheets, ``.odp`` presentations, as LibreOffice writes them):
a zip whose ``content.xml`` holds the text, checked as an Office package is before it is parsed."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import NamedTuple
from xml.etree.ElementTree import Element

from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, OverBudget, clean_text, join_pages
from ingestion.loaders.images import SUFFIXES as IMAGE_SUFFIXES
from ingestion.loaders.images import EmbeddedImages, describe_error
from ingestion.loaders.ooxml import UNREADABLE, ShallowTreeBuilder, parse_part, refuse_bombs
from ingestion.loaders.sheets import LOOKAHEAD, MAX_CELLS, ColumnHeaders, blame_headers, read_sheets
from kb.types import ExtractedDocument, ExtractedImage, Page

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
    "dc": "http://purl.org/dc/elements/1.1/",
}


def _q(name: str) -> str:
    """``prefix:local`` as ElementTree names it."""
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


_P, _H, _S, _TAB, _BREAK = (_q(name) for name in ("text:p", "text:h", "text:s", "text:tab", "text:line-break"))
_TABLE, _ROW, _CELL = _q("table:table"), _q("table:table-row"), _q("table:table-cell")
_NUMBER, _NOTE = _q("text:number"), _q("text:note")
_CELLS = frozenset({_CELL, _q("table:covered-table-cell")})
_ROW_GROUPS = frozenset(map(_q, ("table:table-header-rows", "table:table-rows", "table:table-row-group")))
_FRAME, _IMAGE, _PAGE, _NOTES = _q("draw:frame"), _q("draw:image"), _q("draw:page"), _q("presentation:notes")
# Drawn shapes a paragraph may anchor: their text is read after it, as a frame's text boxes are.
_DRAWN = frozenset({_FRAME, *map(_q, ("draw:custom-shape", "draw:rect", "draw:ellipse", "draw:circle", "draw:polygon",
                                      "draw:regular-polygon", "draw:polyline", "draw:path", "draw:line",
                                      "draw:connector", "draw:caption", "draw:measure", "draw:g"))})
_OBJECTS = frozenset({_q("draw:object"), _q("draw:object-ole")})
_CLASS = _q("presentation:class")
_PAGE_FIELDS = frozenset({_q("text:page-number"), _q("text:page-count")})
_PLACEHOLDERS = frozenset({"page-number", "date-time", "header", "footer"})  # a notes page's, which are no notes
_SHAPES = _q("table:shapes")
_C, _ROWS_REPEATED, _COLUMNS_REPEATED = _q("text:c"), _q("table:number-rows-repeated"), _q(
    "table:number-columns-repeated")
_VALUE_TYPE, _HREF, _NAME = _q("office:value-type"), _q("xlink:href"), _q("table:name")
_KEPT_ATTRIBUTES = frozenset({_C, _ROWS_REPEATED, _COLUMNS_REPEATED, _VALUE_TYPE, _HREF, _NAME, _CLASS})
_PAGED = {_q("office:spreadsheet"): "sheets", _q("office:presentation"): "slides", _q("office:drawing"): "slides"}
# Never read: tracked deletions, comments, the citation mark of a footnote (its text is read where it stands),
# generated indexes (a table of contents repeats the headings with page numbers), declarations, forms, scripts.
_SKIPPED = frozenset(map(_q, (
    "text:tracked-changes", "office:annotation", "office:annotation-end", "text:note-citation",
    "text:table-of-content", "text:illustration-index", "text:table-index", "text:object-index", "text:user-index",
    "text:alphabetical-index", "text:bibliography", "text:sequence-decls", "text:variable-decls",
    "text:user-field-decls", "table:table-columns", "table:table-column", "table:table-column-group",
    "office:forms", "office:scripts", "office:event-listeners", "table:named-expressions",
    "table:database-ranges", "svg:title", "svg:desc",
)))
_WHITESPACE = re.compile(r"[ \t\r\n]+")  # a run of it in a paragraph's text is one space (ODF's rule)
_MAX_DEPTH = 100  # elements nested deeper are read as their plain text, to bound the recursion
# Spaces one <text:s> stands for, at most: more are no more text (one of 10^21 refused a document as over budget)
_MAX_SPACES = 1000
_IN_PARAGRAPH = -1  # the line of a picture anchored in a paragraph, until that paragraph's line is known


class _Picture(NamedTuple):
    """A picture a frame shows: the package part it names, its alt text, its page (None in a text document), the
    line of its page it stands on, and whether it takes that line's span (the paragraph or caption holding it) or
    an empty one where the line begins."""

    href: str
    alt: str | None
    page: int | None
    line: int
    spanned: bool


class OdfLoader(Loader):
    """Text of an OpenDocument file, laid out by what its body holds whatever its name: a text document's
    paragraphs, headings, lists and tables (a row per line, cells ` | `), footnotes where their mark stands; a
    spreadsheet's sheets, each a page starting with its name, read as workbook sheets are (column headers
    repeated before values), then its shapes' text; a presentation's slides, each a page of its frames' text,
    then its notes after ``Notes:``. Pictures stored in the file are images with their title or description as
    alt text; tracked deletions, comments, generated indexes and charts are not read. The title is the
    document's own, else its first heading."""

    def __init__(self, file_type: str) -> None:
        self.file_type = file_type

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        kind = self.file_type.upper()
        refuse_bombs(data, limits.max_chars, kind)
        warnings: list[str] = []
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as package:
                names = set(package.namelist())
                if "META-INF/manifest.xml" in names and b"encryption-data" in package.read("META-INF/manifest.xml"):
                    raise LoadError(f"{kind} is encrypted: it needs a password")
                def read(labelled: bool) -> _Reading:
                    reading = _Reading(limits, warnings, labelled)
                    reading.body(_parse(package, "content.xml", kind))  # the tree is dropped once it is read
                    return reading

                reading = read_sheets(read, limits, warnings)
                texts, spans = reading.layout()
                text, pages = join_pages(texts)
                images = _images(reading.pictures, package, names, pages, spans,
                                 EmbeddedImages(limits, warnings, root, on_kept))
                title = _meta_title(package, names, kind, warnings) or reading.first_heading
        except UNREADABLE as error:
            raise LoadError(f"corrupt {kind}: {describe_error(error)}") from error
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, images=images,
                                 pages=pages if reading.paged else [], warnings=warnings)


class _ReadAttributes(ShallowTreeBuilder):
    """Builds the tree with only the attributes the loader reads (a hostile file's long attributes on two million
    elements cost 1.85 GB parsed whole)."""

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        return super().start(tag, {name: value for name, value in attrs.items() if name in _KEPT_ATTRIBUTES})


def _parse(package: zipfile.ZipFile, name: str, kind: str) -> Element:
    """A part of the package parsed safely (``parse_part``), with only the attributes the loader reads."""
    if name not in package.namelist():
        raise LoadError(f"not an OpenDocument file: no {name}")
    return parse_part(package, name, kind, _ReadAttributes())


def _meta_title(package: zipfile.ZipFile, names: set[str], kind: str, warnings: list[str]) -> str | None:
    """The title meta.xml gives, if any; one that cannot be read is a warning, not a reason to refuse the file."""
    if "meta.xml" not in names:
        return None
    try:
        found = _parse(package, "meta.xml", kind).find(f".//{_q('dc:title')}")
    except LoadError as error:
        warnings.append(f"meta.xml not read: {error}")
        return None
    return " ".join("".join(found.itertext()).split()) or None if found is not None else None


class _Reading:
    """Renders a document's body to the lines of its pages, collecting the pictures its frames show, within the
    text allowance (each character counted once, as it is read) and ``MAX_CELLS`` of a spreadsheet's cells."""

    def __init__(self, limits: Limits, warnings: list[str], labelled: bool = True) -> None:
        self.limits = limits
        self.warnings = warnings
        self.labelled = labelled  # a sheet's column headers are repeated before its values
        self.labels = 0  # characters of column headers repeated
        self.pages: list[list[str]] = []
        self.lines: list[str] = []  # of the page being read
        self.page: int | None = None
        self.pictures: list[_Picture] = []
        self.first_heading: str | None = None
        self.paged = False  # a spreadsheet or a presentation: its pages are sheets or slides
        self.slides = False  # a presentation or a drawing, whose page-number fields hold "<number>", not a number
        self.length = 0
        self.cells = 0

    def body(self, content: Element) -> None:
        """Reads the document's body: one page for a text document, one per sheet or slide."""
        bodies = [child for body in content.findall(_q("office:body")) for child in body
                  if child.tag in _PAGED or child.tag == _q("office:text")]
        if not bodies:
            raise LoadError("not an OpenDocument text, spreadsheet or presentation: content.xml has no such body")
        document = bodies[0]
        if document.tag not in _PAGED:
            self._blocks(document, 0)
            self.pages.append(self.lines)
            return
        self.paged = True
        sheets = document.tag == _q("office:spreadsheet")
        self.slides = not sheets
        units = document.findall(_TABLE if sheets else _PAGE)
        if len(units) > self.limits.max_pages:
            self.warnings.append(f"only the first {self.limits.max_pages} of {len(units)} {_PAGED[document.tag]} "
                                 "were read (max_pages)")
        for number, unit in enumerate(units[: self.limits.max_pages], 1):
            self.lines, self.page = [], number
            if not sheets:
                self._slide(unit)
            elif self.cells <= MAX_CELLS:  # past it, later sheets are empty pages
                self._sheet(unit, number)
            self.pages.append(self.lines)

    def layout(self) -> tuple[list[str], list[list[tuple[int, int]]]]:
        """Each page's text (its lines cleaned, empty ones dropped: joined, they are clean text) and the span of
        each of its lines in it (an empty line's is empty, where the next begins; one more after the last); a
        picture's span is then its line's, with no search."""
        texts, spans = [], []
        for lines in self.pages:
            kept: list[str] = []
            placed: list[tuple[int, int]] = []
            at = 0
            for line in lines:
                cleaned = clean_text(line)
                placed.append((at, at + len(cleaned)))
                if cleaned:
                    kept.append(cleaned)
                    at += len(cleaned) + 1
            text = "\n".join(kept)
            texts.append(text)
            spans.append([(min(start, len(text)), min(end, len(text))) for start, end in placed]
                         + [(len(text), len(text))])
        return texts, spans

    def _read(self, text: str | None) -> str:
        """A piece of a paragraph's text, its white space as ODF says (a run is one space), counted as read."""
        text = _WHITESPACE.sub(" ", text or "")
        self._spend(len(text))
        return text

    def _spend(self, characters: int) -> None:
        self.length += characters
        try:
            self.limits.check_chars(self.length)
        except OverBudget as error:
            blame_headers(error, self.length, self.labels, self.limits)
            raise

    def _blocks(self, element: Element, depth: int) -> None:
        """Adds the lines of a container's children (the body, a section, a list, a cell, a text box, a shape)."""
        for child in element:
            self._block(child, depth + 1)

    def _block(self, element: Element, depth: int) -> None:
        """Adds the lines of one element: a paragraph or a heading a line (the text boxes of frames anchored in it
        after it), a table a line per row, a frame its text boxes (its picture noted), anything else the lines of
        its children."""
        if element.tag in _SKIPPED:
            return
        if depth > _MAX_DEPTH:
            self.lines.append(self._read("".join(element.itertext())))
        elif element.tag in (_P, _H):
            line, first = len(self.lines), len(self.pictures)
            self.lines.append("")
            self.lines[line] = self._inline(element, depth)
            self._place(first, line, _IN_PARAGRAPH)
            if element.tag == _H and self.first_heading is None and self.lines[line].strip():
                self.first_heading = self.lines[line]
        elif element.tag == _TABLE:
            for row in _rows(element):
                first = len(self.pictures)
                cells = [" ".join(" ".join(self._collect(cell, depth + 1)).split()) for cell in row
                         if cell.tag in _CELLS]
                if line := " | ".join(cell for cell in cells if cell):
                    self.lines.append(line)
                self._place(first, len(self.lines) - 1 if line else len(self.lines))
        elif element.tag == _FRAME:
            self._frame(element, depth, in_paragraph=False)
        else:
            self._blocks(element, depth)

    def _inline(self, element: Element, depth: int) -> str:
        """A paragraph's text: spans and links read through, ``<text:s>`` spaces, tabs and line breaks kept, a
        footnote's or endnote's text where its mark stands, on one line; frames anchored in it add their lines after
        it."""
        parts = [self._read(element.text)]
        for child in element:
            if child.tag in _SKIPPED or (self.slides and child.tag in _PAGE_FIELDS):
                pass
            elif child.tag == _S:
                spaces = min(_count(child.get(_C)), _MAX_SPACES)
                self._spend(spaces)
                parts.append(" " * spaces)
            elif child.tag == _NUMBER:  # a list or heading number LibreOffice wrote out
                parts.append(self._read("".join(child.itertext())) + " ")
            elif child.tag in (_TAB, _BREAK):
                self._spend(1)
                parts.append("\t" if child.tag == _TAB else "\n")
            elif depth >= _MAX_DEPTH:
                parts.append(self._read("".join(child.itertext())))
            elif child.tag in _DRAWN:
                self._frame(child, depth + 1, in_paragraph=True)
            elif child.tag == _NOTE:  # its blanks one space, as the Word formats' notes read
                note = " ".join(self._inline(child, depth + 1).split())
                parts.append(" " + note if note else "")
            elif child.tag in (_P, _H):  # a note's paragraphs
                parts.append(" " + self._inline(child, depth + 1))
            else:
                parts.append(self._inline(child, depth + 1))
            parts.append(self._read(child.tail))
        return "".join(parts)

    def _frame(self, frame: Element, depth: int, in_paragraph: bool) -> None:
        """A frame's text boxes and tables, and the picture it shows: of several images (alternatives, such as an
        SVG and its PNG), the first a picture format names, else the first; none when the frame holds an object
        (a chart), whose image is only its rendering."""
        images = [child for child in frame if child.tag == _IMAGE]
        rasters = [image for image in images if Path(image.get(_HREF) or "").suffix.lower() in IMAGE_SUFFIXES]
        shown = None if any(child.tag in _OBJECTS for child in frame) else next(iter(rasters or images), None)
        for child in frame:
            if child.tag in _DRAWN and depth < _MAX_DEPTH:  # a group's frames: anchored where the group is
                self._frame(child, depth + 1, in_paragraph)
            elif child.tag != _IMAGE:
                self._block(child, depth + 1)
            elif child is shown:
                line = len(self.lines)
                self._blocks(child, depth + 1)  # an image may hold its caption's paragraphs
                described = (frame.find(_q("svg:title")), frame.find(_q("svg:desc")))
                alt = " ".join(" ".join("".join(found.itertext()) for found in described if found is not None).split())
                self.pictures.append(_Picture(child.get(_HREF) or "", alt or None, self.page,
                                              _IN_PARAGRAPH if in_paragraph else line,
                                              in_paragraph or len(self.lines) > line))

    def _place(self, first: int, line: int, waiting: int | None = None) -> None:
        """Puts the pictures noted since ``first`` on ``line`` of the page, with its span: those waiting for their
        paragraph (``waiting``), or all of them (read into a table row)."""
        for index in range(first, len(self.pictures)):
            picture = self.pictures[index]
            if waiting is None or picture.line == waiting:
                self.pictures[index] = picture._replace(line=line, spanned=line < len(self.lines))

    def _collect(self, element: Element, depth: int, whole: bool = False) -> list[str]:
        """The lines of a container read apart from the page (a table cell's, joined into its row); of the element
        itself with ``whole``."""
        page, self.lines = self.lines, []
        try:
            (self._block if whole else self._blocks)(element, depth)
            return self.lines
        finally:
            self.lines = page

    def _sheet(self, table: Element, number: int) -> None:
        """A sheet: its name, then a line per row holding a value, its values after their column's header once it
        is found, then its shapes' text. Repeated rows and cells (LibreOffice writes a run of equal cells once)
        are read as often as they repeat when they hold a value, each counted against ``MAX_CELLS``, past which
        no more is read."""
        name = table.get(_NAME) or f"Sheet {number}"
        self.lines.append(self._read(name))
        headers, sheet_first = ColumnHeaders(self.labelled), len(self.pictures)
        written: dict[int, range] = {}  # each row's lines (a row repeats), by number, while its headers may be found
        whole = self._sheet_rows(table, name, headers, written)
        headers.finish()
        self._relabel(headers, written)
        if not whole:
            return
        for shapes in table.iter(_SHAPES):
            self._blocks(shapes, 1)
        if len(self.lines) == 1 and len(self.pictures) == sheet_first:
            self.lines.clear()  # a sheet without values is an empty page

    def _sheet_rows(self, table: Element, name: str, headers: ColumnHeaders, written: dict[int, range]) -> bool:
        """Adds a line for each of a sheet's rows holding a value, as often as it repeats; False once the
        document's ``MAX_CELLS`` are spent."""
        for row in _rows(table):
            values: list[tuple[int, str]] = []
            texts, column, first = True, 0, len(self.pictures)
            for cell in row:
                if cell.tag not in _CELLS:
                    continue
                repeated = _count(cell.get(_COLUMNS_REPEATED))
                text = " ".join(" ".join(self._collect(cell, 1)).split())
                if not self._cells(repeated if text else 1, name, headers.seen):
                    self._place(first, len(self.lines))  # pictures of the row cut short stand after the last
                    return False
                if text:
                    self._spend(3 + (len(text) + 3) * (repeated - 1))  # its " | ", and its repeats
                    values.extend((column + offset, text) for offset in range(repeated))
                    texts = texts and cell.get(_VALUE_TYPE, "string") == "string"
                column += repeated
            if values:
                searching = headers.searching
                line, labelled = headers.line(values, texts)
                start = len(self.lines)
                self._add_row(line, labelled)
                whole = self._repeat_row(row, (line, labelled), len(values), name, headers.seen)
                if searching and headers.seen <= LOOKAHEAD:  # only the first rows are ever labelled afterwards
                    written[headers.seen] = range(start, len(self.lines))
                self._relabel(headers, written)
                if not whole:
                    self._place(first, len(self.lines) - 1)
                    return False
            self._place(first, len(self.lines) - 1 if values else len(self.lines))
        return True

    def _repeat_row(self, row: Element, labelled: tuple[str, int], values: int, name: str, rows: int) -> bool:
        """Adds a row's ``labelled`` line (with its characters of header labels) again for each of its repeats;
        False once the document's ``MAX_CELLS`` are spent."""
        line, labels = labelled
        for _ in range(_count(row.get(_ROWS_REPEATED)) - 1):
            if not self._cells(values, name, rows):
                return False
            self.labels += labels
            self._spend(len(line) + 1)
            self.lines.append(line)
        return True

    def _add_row(self, line: str, labelled: int) -> None:
        """Adds a row's line, counting its ``labelled`` characters of header labels."""
        self.labels += labelled
        self._spend(labelled)
        self.lines.append(line)

    def _relabel(self, headers: ColumnHeaders, written: dict[int, range]) -> None:
        """Rewrites the lines of the rows written before their headers were found, each as often as it repeats."""
        for number, line, labelled in headers.relabelled():
            for index in written[number]:
                self.labels += labelled
                self._spend(labelled)
                self.lines[index] = line

    def _cells(self, count: int, sheet: str, rows: int) -> bool:
        """Counts cells looked at; False, with a warning, once a document's ``MAX_CELLS`` are spent."""
        self.cells += count
        if self.cells <= MAX_CELLS:
            return True
        self.warnings.append(f"sheet {sheet[:100]}: only its first {rows} rows with values were read, and no later "
                             f"sheet (a spreadsheet's first {MAX_CELLS:,} cells are read)")
        return False

    def _slide(self, slide: Element) -> None:
        """A slide: its frames' and shapes' text in the order the file lists them, then its notes."""
        for child in slide:
            if child.tag != _NOTES:
                self._block(child, 1)
        notes = slide.find(_NOTES)
        first = len(self.pictures)
        kept = [] if notes is None else [child for child in notes if child.get(_CLASS) not in _PLACEHOLDERS]
        lines = [line for child in kept for line in self._collect(child, 2, whole=True)]
        if said := " ".join(" ".join(lines).split()):
            self.lines.append(f"Notes: {said}")
        self._place(first, len(self.lines) - 1)


def _rows(table: Element) -> list[Element]:
    """A table's rows, those in its header, row groups and row lists included (however deep), not those of tables
    in its cells."""
    rows: list[Element] = []
    stack = [iter(table)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif child.tag == _ROW:
            rows.append(child)
        elif child.tag in _ROW_GROUPS:
            stack.append(iter(child))
    return rows


def _count(value: str | None) -> int:
    """A repeat or space count as written (1 when absent or not a positive number)."""
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _images(pictures: list[_Picture], package: zipfile.ZipFile, names: set[str], pages: list[Page],
            lines: list[list[tuple[int, int]]], images: EmbeddedImages) -> list[ExtractedImage]:
    """The pictures stored in the package, each with its alt text, on its page, spanning the line it stands on;
    one linked from outside the file, or naming one of its XML parts, is not read."""
    hashes: dict[str, str] = {}  # a picture part's hash, by name
    for picture in pictures:
        name = picture.href.removeprefix("./")
        if name not in names:
            images.skip(picture.href[:200] or "a frame", "linked, not stored in the file" if name else "no picture")
            continue
        if name.lower().endswith(".xml"):
            images.skip(name[:200], "names a part of the document's XML, not a picture")
            continue
        if images.full:
            images.beyond_limits(1)
            continue
        page = (picture.page or 1) - 1
        start, end = (pages[page].start + at for at in lines[page][picture.line])
        data = b""  # a part shown again is a repeat: only its hash is looked at, it is neither unpacked nor hashed
        if name not in hashes:
            try:
                data = package.read(name)
            except UNREADABLE as error:
                images.skip(name[:200], f"cannot be unpacked: {describe_error(error)}")
                continue
            hashes[name] = hashlib.sha256(data).hexdigest()
        images.add_bytes(data, name, sha256=hashes[name], start=start, end=end if picture.spanned else start,
                         alt=picture.alt, page=picture.page)
    return images.finish()
