"""HTML pages reduced to the text a browser shows, with block structure kept as line and paragraph breaks."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any, NamedTuple

from bs4 import BeautifulSoup, NavigableString, Tag, XMLParsedAsHTMLWarning
from bs4.element import PageElement, PreformattedString

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, clean_text
from ingestion.loaders.images import EmbeddedImages
from ingestion.loaders.places import PlaceMarks, after_text, before_text
from kb.types import ExtractedDocument

# A charset named by <meta charset>, <meta http-equiv content="...; charset=..."> or an XML declaration.
_DECLARED = re.compile(
    rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)|<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)""", re.IGNORECASE
)
_SNIFF_BYTES = 16384

# Not page content: form controls (their options and what a user types) and the like.
_DROPPED = frozenset({"head", "script", "style", "noscript", "template", "svg", "iframe", "nav", "object", "embed",
                      "select", "textarea", "datalist"})
_NOTE_TYPES = frozenset({"footnote", "endnote", "rearnote", "note"})  # an EPUB's epub:type of a note
_NOTE_ROLES = frozenset({"doc-footnote", "doc-endnote"})  # DPUB-ARIA roles of a note
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_ARTICLES = frozenset({"article", "main"})  # where a header or footer is the article's own, not the page's
_HIDDEN_ROLES = frozenset({"navigation", "banner", "contentinfo"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_PARAGRAPH = frozenset({
    "address", "article", "aside", "blockquote", "caption", "center", "details", "dialog", "div", "dl", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "ol", "p",
    "pre", "section", "summary", "table", "ul",
})
_LINE = frozenset({"dd", "dt", "li", "tr"})
_SVG_DEFINITIONS = frozenset({"defs", "pattern", "mask", "clippath", "symbol", "marker"})  # as the parser names them
_CELLS = ("td", "th")
_ROW_GROUPS = frozenset({"table", "thead", "tbody", "tfoot"})
_MAX_NESTED_TABLES = 20  # deeper tables are flattened without hiding anything, to bound the recursion
_SPACES = re.compile(r"[ \t\n\r\f]+")
_IMAGE_BLOCKS = _PARAGRAPH | _LINE | set(_CELLS)  # an image's span is the text of the nearest of these around it
_MAX_SPAN = 2000  # a block with more text than this is not a useful span for an image
_MAX_SPAN_NODES = 2 * _MAX_SPAN  # elements and strings looked at while rendering one image's block or caption


class HtmlLoader(Loader):
    """Visible text of an HTML page; the title comes from <title>, else the first <h1>.

    Visible ``<img>`` elements whose ``src`` is a local file (relative to the page) or a data: URI come as
    images, with alt (or title) text, their <figcaption>, and the span of the block around them.
    """

    file_type = "html"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        if len(data) > limits.max_markup_bytes:
            raise LoadError(f"over budget: HTML of {len(data) / 2**20:.1f} MB, over the "
                            f"{limits.max_markup_bytes / 2**20:g} MB limit (max_html_mb)")
        notes: list[str] = []
        images = EmbeddedImages(limits, notes, root, on_kept)
        visible, title = read_page(decode_page(data, notes), path.parent, images)
        return ExtractedDocument(text=visible, file_type=self.file_type, title=title, images=images.finish(),
                                 warnings=notes, references=images.references)


def decode_page(data: bytes, warnings: list[str]) -> str:
    """The text of an HTML page's bytes: in the charset it declares, else the one detected."""
    return encoding.decode_text(data, _declared_charset(data), warnings)


def read_page(markup: str, folder: PurePath, images: EmbeddedImages, read_before: int = 0) -> tuple[str, str | None]:
    """The visible text and the title of one HTML page; its visible images are added to ``images``, their spans
    in that text (``folder``: where its ``src`` paths start), once the text, with the ``read_before`` characters
    of the document's earlier pages, is known to be within the allowance."""
    soup = _soup(markup)
    shown = list(_visible_images(soup))
    marks, numbers = PlaceMarks(), dict[int, int]()  # the number of each marked element, by its id
    for found in shown:  # where the block around each image begins is marked (where the image is, without one)
        numbers.setdefault(id(found.anchor), len(numbers))
    rendered = _render(soup, marks={key: marks.mark(number) for key, number in numbers.items()})
    visible, places = marks.places(clean_text(rendered.marked_value()))
    if places and clean_text(visible) != visible:  # a mark kept cleaning from acting across it (the halves of a
        visible = clean_text(visible)  # surrogate pair): the places may be off by a character or two
    images.limits.check_chars(read_before + len(visible))
    _add_images(soup, shown, visible, {key: places.get(number) for key, number in numbers.items()}, folder, images)
    return visible, _title(soup)


def html_text(markup: str, shown: Callable[[Tag], str] | None = None) -> str:
    """The visible text of an HTML page or fragment (an e-mail's HTML body, HTML in Markdown), each visible
    ``<img>`` shown as the text ``shown`` gives it (as nothing without ``shown``)."""
    soup = _soup(markup)
    if shown is not None:
        for found in _visible_images(soup):
            found.img.replace_with(shown(found.img))
    return clean_text(_render(soup).value())


def _soup(markup: str) -> BeautifulSoup:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML is read as HTML on purpose
        return BeautifulSoup(markup, "lxml")


def image_source(img: Tag) -> tuple[str, str | None]:
    """An ``<img>``'s src (an SVG ``<image>``'s href) and its alt text (the title attribute when there is no alt)."""
    alt = " ".join(str(img.get("alt") or img.get("title") or "").split())
    return str(img.get("src") or img.get("href") or img.get("xlink:href") or ""), alt or None


class _Visible(NamedTuple):
    """A visible ``<img>`` (or SVG ``<image>``) with the elements around it that describe it."""

    img: Tag
    block: Tag | None  # the nearest paragraph, line or cell holding it
    in_article: bool  # whether that block lies inside an <article> or <main>
    figure: Tag | None

    @property
    def anchor(self) -> Tag:
        """What the image's span starts at: its block, or the image itself outside any."""
        return self.block if self.block is not None else self.img


def _visible_images(soup: BeautifulSoup) -> Iterator[_Visible]:
    """Every ``<img>`` a reader sees, in document order, found in one walk of the tree (hidden parts skipped
    whole), so the cost stays linear however deep the nesting; and the pictures an SVG drawing shows (an e-book's
    cover, as Calibre writes it), though its text is not read."""
    stack: list[tuple[PageElement, Tag | None, bool, Tag | None]] = [(soup, None, False, None)]
    while stack:
        node, block, in_article, figure = stack.pop()
        if isinstance(node, Tag) and node.name == "svg" and not _hidden_by_attributes(node):
            # outside any block, the drawing is the image's block: the place of its mark (its text is not read)
            yield from (_Visible(image, node if block is None else block, in_article, figure)
                        for image in _drawn_pictures(node))
        if not isinstance(node, Tag) or _hidden(node, in_article):
            continue
        if node.name == "img":
            yield _Visible(node, block, in_article, figure)
            continue
        if node.name in _IMAGE_BLOCKS:
            block = node
        figure = node if node.name == "figure" else figure
        children_in_article = in_article or _opens_article(node)
        stack.extend((child, block, children_in_article, figure) for child in reversed(node.contents))


def _drawn_pictures(svg: Tag) -> Iterator[Tag]:
    """The ``<image>``s an SVG drawing shows, in order: not those hidden, or in its definitions (a pattern, a mask,
    a symbol), which show only where something uses them."""
    stack: list[PageElement] = list(reversed(svg.contents))
    while stack:
        node = stack.pop()
        if not isinstance(node, Tag) or node.name in _SVG_DEFINITIONS or _hidden_by_attributes(node):
            continue
        if node.name == "image":
            yield node
        else:
            stack.extend(reversed(node.contents))


def _add_images(soup: BeautifulSoup, shown: list[_Visible], text: str, places: dict[int, int | None],
                folder: PurePath, images: EmbeddedImages) -> None:
    """The visible images of the page (``shown``, in document order), each spanning the text of its block from the
    place where that block (or the image itself, outside any block) begins in ``text``.

    An image's block and caption are rendered with a bounded budget: a block too long to be a useful span is
    abandoned early (the image's span is empty, where the block begins), so nested blocks cost no more than flat
    ones. An image in a table nested too deep to mark (``_MAX_NESTED_TABLES``) has the place of the one before.
    """
    numbers = {id(img): number for number, img in enumerate(soup.find_all(("img", "image")), 1)}  # hidden too
    spans: dict[int, tuple[int, int]] = {}  # by the id of an image's anchor, found once for all its images
    last = [0]  # the place of the last image that had one
    for found in shown:
        src, alt = image_source(found.img)

        def described(found: _Visible = found, alt: str | None = alt) -> dict[str, Any]:
            """Caption and span, looked for only when the image is kept: each costs a bounded render."""
            caption = None
            if found.figure is not None:
                figcaption = found.figure.find("figcaption", recursive=False)
                if isinstance(figcaption, Tag):
                    caption = " ".join((_bounded_render(figcaption, found.in_article) or "").split()) or None
            anchor = id(found.anchor)
            if anchor not in spans:
                place = places[anchor]
                start = min(place, len(text)) if place is not None else last[0]
                end = start if found.block is None or place is None else _block_end(found, text, start)
                spans[anchor] = start, end
            start, end = spans[anchor]
            last[0] = start
            return {"start": start, "end": end, "alt": alt, "caption": caption}

        name = f"image {numbers[id(found.img)]} (data URI)" if src.lstrip().lower().startswith("data:") else src
        images.add_reference(src, folder, name, described=described)


def _block_end(found: _Visible, text: str, start: int) -> int:
    """Where the text of ``found``'s block, which begins at ``start``, ends; ``start`` when the block is too long
    to be a useful span, or reads otherwise in its place (a cell's lines are joined in its row)."""
    rendered = _bounded_render(found.block, found.in_article) if found.block is not None else None
    needle = clean_text(rendered or "")
    for shape in (needle, " ".join(needle.split())):
        if shape and text.startswith(shape, start):
            return start + len(shape)
    return start


def _declared_charset(data: bytes) -> str | None:
    found = _DECLARED.search(data[:_SNIFF_BYTES])
    if found is None:
        return None
    return (found.group(1) or found.group(2)).decode("ascii", errors="replace")


def _title(soup: BeautifulSoup) -> str | None:
    head = soup.find("head")
    candidates = [head.find("title") if isinstance(head, Tag) else None, soup.find("h1")]
    for candidate in candidates:
        if isinstance(candidate, Tag) and candidate.get_text().strip():
            return candidate.get_text(" ")
    return None


def _hidden(tag: Tag, in_article: bool) -> bool:
    """Elements a reader does not see as page content: scripts, chrome, navigation, hidden parts.

    ``in_article``: the tag lies inside an <article> or <main>, where a header or footer is the article's own.
    """
    name = tag.name
    if name in _DROPPED:
        return True
    if name == "form":  # read, as browsers show it (ASP.NET and Lotus Domino put whole pages in one); not a search box
        return "search" in _words(tag, "role")
    if name == "aside":  # a sidebar, unless it is a note or holds notes (e-books' and Sphinx's footnotes are asides)
        return not (_is_note(tag) or any(_is_note(child) for child in tag.find_all("aside", recursive=False)))
    if name == "button":  # a control, unless it is a heading's text (an FAQ's question that opens its answer)
        return getattr(tag.parent, "name", None) not in _HEADINGS
    if name == "label":  # a form control's label, not the name of a field shown beside its value
        return tag.has_attr("for")
    if name == "footer" and not in_article:  # the page's footer, unless it holds notes; in an article, its byline
        return not any(_is_note(child) for child in tag.find_all("aside", recursive=False))
    if name == "header" and not in_article:  # the page's banner, unless a section's title (an e-book chapter's)
        return getattr(tag.parent, "name", None) != "section" or not _titles(tag)
    return _hidden_by_attributes(tag)


def _hidden_by_attributes(tag: Tag) -> bool:
    """Hidden by its ``hidden`` attribute, its style, or a role of page chrome."""
    if tag.has_attr("hidden") or _HIDDEN_STYLE.search(str(tag.get("style", ""))):
        return True
    return "role" in tag.attrs and not _HIDDEN_ROLES.isdisjoint(_words(tag, "role"))


def _opens_article(tag: Tag) -> bool:
    return tag.name in _ARTICLES or ("role" in tag.attrs and "main" in _words(tag, "role"))


def _is_note(tag: Tag) -> bool:
    return bool(_NOTE_TYPES.intersection(_words(tag, "epub:type")) or _NOTE_ROLES.intersection(_words(tag, "role")))


def _titles(header: Tag) -> bool:
    """Whether a <header> holds a heading (in it, or in an element in it: <hgroup>) and no <nav>; its children and
    theirs are looked at, so nested headers cost no more than flat ones."""
    children = header.find_all(recursive=False)
    if any(child.name == "nav" for child in children):
        return False
    return any(child.name in _HEADINGS or child.find(_HEADINGS, recursive=False) is not None for child in children)


def _words(tag: Tag, *attributes: str) -> list[str]:
    """The lower-case words of ``tag``'s ``attributes``."""
    return " ".join(str(tag.get(attribute, "")) for attribute in attributes).lower().split()


class _TooLong(Exception):
    """A bounded render ran out of its budget."""


class _Budget:
    """Nodes a bounded render may still look at (None: unbounded)."""

    def __init__(self, nodes: int | None) -> None:
        self.nodes = nodes

    def spend(self) -> None:
        if self.nodes is not None:
            self.nodes -= 1
            if self.nodes < 0:
                raise _TooLong


def _bounded_render(root: Tag, in_article: bool) -> str | None:
    """The visible text under ``root``, or None when it is longer than an image span may be."""
    try:
        text = _render(root, in_article=in_article, budget=_Budget(_MAX_SPAN_NODES)).value()
    except _TooLong:
        return None
    return text if len(text) <= _MAX_SPAN else None


class _Writer:
    """Collects text and owed breaks, so breaks never pile up and spaces never start a line; and place marks, each
    written just before the next character that cleaning keeps as it is (``places.before_text``)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.owed = 0  # newlines to write before the next text
        self.pending: list[str] = []  # marks to write before the next text

    def text(self, text: str, preformatted: bool) -> None:
        if not preformatted:
            text = _SPACES.sub(" ", text)
            if self.owed or not self.parts or self.parts[-1].endswith("\n"):
                text = text.lstrip(" ")
        if not text:
            return
        if self.owed and self.parts:
            self.parts.append("\n" * self.owed)
        self.owed = 0
        if self.pending and (marked := before_text(self.pending, text)) is not None:
            self.pending.clear()
            text = marked
        self.parts.append(text)

    def mark(self, *marks: str) -> None:
        self.pending.extend(marks)

    def brk(self, newlines: int) -> None:
        self.owed = max(self.owed, newlines)

    def line_break(self) -> None:
        """<br>: a second one in a row makes a paragraph break."""
        self.owed = min(self.owed + 1, 2)

    def value(self) -> str:
        """The text written, without the marks no text came after."""
        return "".join(self.parts)

    def marked_value(self) -> str:
        """The text written, the marks no text came after at its end."""
        return after_text(self.value(), self.pending) if self.pending else self.value()


def _render(root: Tag, tables: int = 0, in_article: bool = False, budget: _Budget | None = None,
            marks: dict[int, str] | None = None) -> _Writer:
    """The visible text under ``root``, which lies inside ``tables`` table cells (and an article if
    ``in_article``); a ``budget`` of nodes, when given, raises ``_TooLong`` once spent; where each element in
    ``marks`` (by its id) begins, its mark.

    Iterative, so deeply nested elements cannot exhaust the stack; only nested tables recurse, and only
    up to ``_MAX_NESTED_TABLES`` deep.
    """
    budget = budget or _Budget(None)
    marks = marks or {}
    writer = _Writer()
    preformatted = 0
    stack: list[tuple[PageElement, bool, bool]] = [(root, False, in_article)]
    while stack:
        node, leaving, article = stack.pop()
        budget.spend()
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):  # comments, doctypes, processing instructions
                writer.text(str(node), preformatted > 0)
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if leaving:
            if name == "pre":
                preformatted -= 1
            writer.brk(2 if name in _PARAGRAPH else 1)
            continue
        if id(node) in marks:  # (an SVG drawing is marked, and not read)
            writer.mark(marks[id(node)])
        if _hidden(node, article):
            continue
        article = article or _opens_article(node)
        if name == "br":
            writer.line_break()
        elif name == "tr" or (name in _ROW_GROUPS and node.find(_CELLS, recursive=False) is not None):
            writer.brk(1)  # cells straight in a table, without a row, are one row too (as browsers show them)
            row, after = _row(node, tables, article, budget, marks)
            writer.text(row, preformatted=True)
            writer.mark(*after)
            writer.brk(1)
        elif name in _PARAGRAPH or name in _LINE:
            writer.brk(2 if name in _PARAGRAPH else 1)
            if name == "pre":
                preformatted += 1
            stack.append((node, True, article))
            stack.extend((child, False, article) for child in reversed(node.contents))
        else:
            stack.extend((child, False, article) for child in reversed(node.contents))
    return writer


def _row(row: Tag, tables: int, in_article: bool, budget: _Budget, marks: dict[int, str]) -> tuple[str, list[str]]:
    """A table row as one line: each non-empty cell's text on one line, cells joined by ' | '; text the row holds
    outside its cells, which browsers show too, is read in its place as a cell. And the marks no text of the row
    came after (an image alone in the last cell), for the text after the row."""
    parts: list[str] = []
    pending: list[str] = []
    for child in row.contents:
        part, after = "", []
        if isinstance(child, Tag) and not _hidden(child, in_article):
            if tables < _MAX_NESTED_TABLES:
                cell = _render(child, tables + 1, in_article, budget, marks)
                part, after = cell.value(), cell.pending
            else:
                part = child.get_text(" ")
        elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            part = str(child)
        part = " ".join(part.split())
        if part:
            parts.append("".join(pending) + part)
            pending = []
        pending += after
    return " | ".join(parts), pending
