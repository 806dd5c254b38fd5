"""Markdown files reduced to the text a reader sees, with code kept verbatim: parsed by markdown-it-py (CommonMark
with tables, strikethrough, task lists, footnotes and admonitions), rendered to plain text here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bs4 import Tag
from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.admon import admon_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.tasklists import tasklists_plugin

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import CappedWarnings, Limits, Loader, OnKept, TextCursor, clean_text, kept_by_cleaning
from ingestion.loaders.html import html_text, image_source
from ingestion.loaders.images import EmbeddedImages
from ingestion.loaders.places import PlaceMarks, after_text, before_text
from kb.types import ExtractedDocument, ExtractedImage

_FRONT_MATTER_FENCES = ("---", "+++")
# Lines of YAML or TOML front matter: a key line (``key: value``, ``key = value``, a bare or quoted key) or a TOML
# ``[table]`` header; and lines that only continue one: a ``- item``, an indented or closing-bracket continuation,
# a ``#`` comment. Classes that never overlap, so a long line costs one linear scan.
_FRONT_KEY = re.compile(r"""(?:[\w.-]+|"[^"]*"|'[^']*')[ \t]*(?::(?:[ \t]|$)|=)|\[\[?[^\[\]]+\]\]?[ \t]*$""")
_FRONT_MORE = re.compile(r"-(?:[ \t]|$)|[ \t#\]}]")
# Nesting markdown-it parses (a list level counts two, a quote one): the CommonMark preset's 20 stops at a list ten
# deep. Not more, as it also bounds inline nesting, whose hostile cost grows with it ("[[[[..." takes twice as long
# as at 20). Deeper blocks are kept as plain text (``_UNPARSED``).
_MAX_NESTING = 50
_LINE_BREAK = re.compile(r"<br\s*/?>$", re.IGNORECASE)  # inline HTML that starts a new line
_UNPARSED = "kb_unparsed"  # token type of source lines nested too deep to parse
# Steps a document's link label scans may take, per character of the source: a document's own links take one or two
# (a label is scanned once, a nested image again), while a run of unclosed ``[`` or ``![`` costs 25-40 steps and
# 20-40 us a character (1 MB took 49 s). Past the budget, labels are no longer looked for: brackets read as text.
_LABEL_STEPS_PER_CHAR = 1
_LABEL_STEPS_FREE = 100_000
_LABEL_BUDGET = "kb_label_steps_left"  # key in the parse's env: steps left to the document's label scans


def _parser() -> MarkdownIt:
    """A CommonMark parser that keeps every link target as written: nothing is rendered as HTML, and the image
    containment rule (not a URL allow-list) decides what is read."""
    parser = MarkdownIt("commonmark", {"maxNesting": _MAX_NESTING}).enable(["table", "strikethrough"])
    parser.use(footnote_plugin).use(tasklists_plugin).use(admon_plugin)
    parser.validateLink = lambda url: True  # type: ignore[method-assign]
    parser.normalizeLink = lambda url: url  # type: ignore[method-assign]
    _keep_too_deep(parser)
    _bound_label_scans(parser)
    return parser


def _keep_too_deep(parser: MarkdownIt) -> None:
    """Past ``maxNesting`` markdown-it skips every line to the end of the enclosing block, often the rest of the
    document; this keeps those lines, as a ``_UNPARSED`` token in their place, so that no text is lost silently."""
    tokenize = parser.block.tokenize

    def guarded(state: StateBlock, start: int, end: int) -> None:
        line = state.skipEmptyLines(start)
        if state.level >= _MAX_NESTING and line < end and state.sCount[line] >= state.blkIndent:
            token = state.push(_UNPARSED, "", 0)
            token.content = state.getLines(line, end, state.blkIndent, False)
            token.map = [line, end]
        tokenize(state, start, end)

    parser.block.tokenize = guarded  # type: ignore[method-assign]


def _bound_label_scans(parser: MarkdownIt) -> None:
    """Link, image and footnote labels are scanned by skipping one inline token at a time; this charges each skip to
    the document's budget (``_LABEL_BUDGET`` in the parse's env) and, once it is spent, ends every scan at the end
    of its paragraph, so that no label is found and the parse stays linear with a small constant."""
    skip = parser.inline.skipToken

    def bounded(state: StateInline) -> None:
        left = state.env[_LABEL_BUDGET]
        if left <= 0:
            state.pos = state.posMax
            return
        state.env[_LABEL_BUDGET] = left - 1
        skip(state)

    parser.inline.skipToken = bounded  # type: ignore[method-assign]


def _parse(source: str) -> tuple[list[Token], bool]:
    """The tokens of ``source``, and whether its label scans spent their budget (later links read as text)."""
    env = {_LABEL_BUDGET: _LABEL_STEPS_PER_CHAR * len(source) + _LABEL_STEPS_FREE}
    tokens = _MARKDOWN.parse(source, env)
    return tokens, env[_LABEL_BUDGET] <= 0


_MARKDOWN = _parser()


class _Reference(NamedTuple):
    """An image a Markdown file shows: ``![alt](src "title")`` or an HTML ``<img>``."""

    src: str
    alt: str | None
    title: str | None


class MarkdownLoader(Loader):
    """Visible text of a Markdown file: markup removed, image alt text and link text kept, code kept.

    The title is the front matter's ``title``, else the first heading of the highest level. Images linked by a
    relative path (or a data: URI) come with their alt text, title as caption, and the span of the alt text.
    """

    file_type = "markdown"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        notes: list[str] = []
        decoded = encoding.decode_text(data, warnings=notes)
        # The visible text is most of the source, and parsing costs about 140 times the source in memory, so a
        # source over the text limit is refused before it is parsed.
        limits.check_chars(len(decoded))
        title, source = _front_matter(decoded)
        rendered = _Renderer(first_line=decoded.count("\n", 0, len(decoded) - len(source)) + 1)
        tokens, labels_spent = _parse(source)
        rendered.blocks(tokens)
        if title is None and rendered.headings:
            title = min(rendered.headings, key=lambda heading: heading[0])[1]
        text, places = rendered.marks.places(clean_text("\n".join(rendered.out)))
        limits.check_chars(len(text))
        notes += _too_deep(rendered.unparsed)
        if labels_spent:
            notes.append("Markdown with too many unclosed '[' to parse in time: links, images and footnotes after "
                         "the first ones read as plain text")
        embedded = EmbeddedImages(limits, notes, root, on_kept)
        images = _images(rendered.references, text, places, path.parent, embedded)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, images=images, warnings=notes,
                                 references=embedded.references)


def _too_deep(lines: list[int]) -> list[str]:
    """The warnings for blocks kept as plain text, nested too deep, beginning at the file's ``lines``: the first
    few named, the rest counted (a hostile file nests thousands)."""
    notes: list[str] = []
    warnings = CappedWarnings(notes, f"{{}} more block(s) nested more than {_MAX_NESTING} levels deep kept as "
                              "plain text")
    for line in lines:
        warnings.add(f"Markdown nested more than {_MAX_NESTING} levels deep at line {line}: the rest of that block "
                     "is kept as plain text")
    warnings.finish()
    return notes


def _front_matter(source: str) -> tuple[str | None, str]:
    """(title, the rest) of a document that opens with YAML (``---``) or TOML (``+++``) front matter, closed by
    the same fence or ``...``; (None, ``source``) when there is none. A block that holds no key, or a line that is
    not YAML or TOML, is content between two rules, not front matter. One pass over the lines, no backtracking."""
    first = source.find("\n")
    fence = source[:first].rstrip(" \t") if first >= 0 else ""
    if fence not in _FRONT_MATTER_FENCES:
        return None, source
    title: str | None = None
    keyed = False
    position = first + 1
    while position <= len(source):
        end = source.find("\n", position)
        line = source[position:] if end < 0 else source[position:end]
        if line.rstrip(" \t") in (fence, "..."):
            return (title, "" if end < 0 else source[end + 1:]) if keyed else (None, source)
        if _FRONT_KEY.match(line):
            keyed, title = True, title or _front_title(line)
        elif line.strip() and not _FRONT_MORE.match(line):
            return None, source  # prose: the document starts with a rule
        if end < 0:
            break
        position = end + 1
    return None, source  # never closed: an ordinary document that starts with a rule


def _front_title(line: str) -> str | None:
    """The value of a front matter line ``title: ...`` (or ``title = "..."``), quotes removed; None otherwise."""
    if not line.startswith("title"):
        return None
    rest = line[len("title"):].lstrip(" \t")
    if not rest or rest[0] not in ":=":
        return None
    value = rest[1:].strip(" \t")
    if value[:1] in ("'", '"'):
        value = value[1:]
    if value[-1:] in ("'", '"'):
        value = value[:-1]
    return value or None


def _images(references: list[_Reference], text: str, places: dict[int, int], folder: Path,
            images: EmbeddedImages) -> list[ExtractedImage]:
    """The referenced images, each spanning its alt text at its place in ``text`` (an image without alt text: the
    empty span where the text after it begins, or where the text ends)."""
    cursor = TextCursor(text)
    for number, reference in enumerate(references):
        def described(number: int = number, reference: _Reference = reference) -> dict[str, Any]:
            """The span of the alt text, looked for only when the image is kept."""
            if number in places:
                cursor.start = cursor.end = places[number]
            start, end = (reference.alt and cursor.find(reference.alt)) or (cursor.end, cursor.end)
            return {"start": start, "end": end}

        images.add_reference(reference.src, folder, reference.src, described=described, alt=reference.alt,
                             caption=reference.title)
    return images.finish()


class _Renderer:
    """The visible text of a token stream: one paragraph per block (the items of a tight list and the rows of a
    table on lines of their own), inline markup dropped, alt text in place of each image."""

    def __init__(self, first_line: int = 1) -> None:
        self.first_line = first_line  # the file's line number of the first line parsed (after front matter)
        self.out: list[str] = []
        self.headings: list[tuple[int, str]] = []  # (level, text) in order
        self.references: list[_Reference] = []  # the images shown, in order
        self.unparsed: list[int] = []  # the file's line number where each block kept unparsed begins
        self._row: list[str] | None = None
        self.marks = PlaceMarks()  # where each image's alt text begins, or the text after an image without one
        self._pending: list[str] = []  # marks of images without alt text, for the next text written

    def blocks(self, tokens: Sequence[Token]) -> None:
        heading, tight = 0, False  # in a heading; in a paragraph of a tight list item
        for token in tokens:
            if token.type == "heading_open":
                heading = int(token.tag[1])
            elif token.type in ("paragraph_open", "paragraph_close"):
                tight = token.hidden and token.type == "paragraph_open"
            elif token.type in ("fence", "code_block"):
                self.out.extend(["", self._after_images(token.content.strip("\n")), ""])  # verbatim, indented
            elif token.type == "html_block":
                self._paragraph(self._html(token.content))
            elif token.type == _UNPARSED:
                self.unparsed.append(self.first_line + (token.map[0] if token.map else 0))
                self._paragraph(token.content)
            elif token.type == "tr_open":
                self._row = []
            elif token.type == "tr_close" and self._row is not None:
                self._line(" | ".join(self._row))
                self._row = None
            elif token.type == "inline":
                text = self._inline(token.children or [])
                if self._row is not None:
                    self._row.append(self._after_images(text.replace("\n", " ").strip()))  # a cell's lines on one
                elif heading:
                    self.headings.append((heading, " ".join(self.marks.without(text).split())))  # one line
                    self._paragraph(text)
                    heading = 0
                elif tight:
                    self._line(text)
                else:
                    self._paragraph(text)
            elif token.type == "table_close":
                self.out.append("")
        if self._pending:  # images after the last words: where the text ends
            last = max((index for index, line in enumerate(self.out) if any(map(kept_by_cleaning, line))),
                       default=None)
            if last is None:
                self.out.append("".join(self._pending))
            else:
                self.out[last] = after_text(self.out[last], self._pending)

    def _paragraph(self, text: str) -> None:
        self.out.extend(["", self._after_images(text.strip()), ""])

    def _line(self, text: str) -> None:
        self.out.append(self._after_images(text.strip()))

    def _after_images(self, text: str) -> str:
        """``text``, the marks of the images without alt text before it at its start (they wait for text that has a
        character to stand before)."""
        if self._pending and (marked := before_text(self._pending, text)) is not None:
            self._pending.clear()
            return marked
        return text

    def _inline(self, tokens: Sequence[Token]) -> str:
        parts: list[str] = []
        for token in tokens:
            if token.type in ("text", "code_inline"):
                parts.append(token.content)
            elif token.type in ("softbreak", "hardbreak"):
                parts.append("\n")
            elif token.type == "image":
                alt = self.marks.without(self._inline(token.children or [])).strip()  # one inside: no place
                parts.append(self._placed(_Reference(str(token.attrGet("src") or ""), alt or None,
                                                     str(token.attrGet("title") or "").strip() or None)))
            elif token.type == "html_inline" and _LINE_BREAK.match(token.content):
                parts.append("\n")
            elif token.type == "html_inline" and token.content[:4].lower() == "<img":
                parts.append(self._html(token.content))  # any other inline tag is markup, shown as nothing
        return "".join(parts)

    def _html(self, markup: str) -> str:
        """The visible text of raw HTML, as an HTML page's, each visible ``<img>`` kept as a reference and shown as
        its alt text."""
        return html_text(markup, self._shown)

    def _shown(self, img: Tag) -> str:
        return self._placed(_Reference(*image_source(img), None))

    def _placed(self, reference: _Reference) -> str:
        """The image's alt text as shown, marked with the image's number; an image without alt text shows nothing,
        and its mark waits for the next text written."""
        self.references.append(reference)
        number = len(self.references) - 1
        if reference.alt:
            return f"{self.marks.mark(number)}{reference.alt}"
        self._pending.append(self.marks.mark(number))
        return ""
