"""Markdown files reduced to the text a reader sees, with code kept verbatim."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, NamedTuple

from bs4 import BeautifulSoup

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import Limits, Loader, TextCursor, clean_text
from ingestion.loaders.html import image_source
from ingestion.loaders.images import EmbeddedImages
from kb.types import ExtractedDocument, ExtractedImage

_FRONT_MATTER_FENCES = ("---", "+++")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)

_ATX = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])[ \t]*(?:\1[ \t]*){2,}$")
_ADMONITION = re.compile(r'^\s*(?:!!!|\?\?\?\+?)[ \t]*[\w-]+(?:[ \t]+"(.*)")?[ \t]*$')
_LINK_DEFINITION = re.compile(r"^ {0,3}\[(?!\^)[^\]]+\]:\s*\S+.*$")
_FOOTNOTE_DEFINITION = re.compile(r"^\s*\[\^[^\]]+\]:\s*")
_QUOTE = re.compile(r"^\s*(?:>[ \t]?)+")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?")
_CELL_BORDER = re.compile(r"(?<!\\)\|")

# Code spans and backslash escapes are taken literally; everything between them gets the inline rules.
# Every repetition that could scan far is bounded (or stops at "<"), so hostile input stays linear.
_LITERAL = re.compile(r"(?<!`)(`{1,16})(?!`)(.{1,2000}?)(?<!`)\1(?!`)|\\([!-/:-@\[-`{-~])")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_URL = r"\((?:[^()]|\([^()]{0,500}\)){0,2000}\)"
_LABEL = r"\[([^\]]{0,1000})\]"
_SPAN = r"(?:.|\n(?!\n)){1,500}?"  # emphasised text: may wrap onto the next line, never past a paragraph
_IMAGE = re.compile(r"!" + _LABEL + r"\(\s*<?([^\s()<>]{1,2000})>?(?:\s+[\"'(]([^\"')]{0,1000})[\"')])?\s*\)")
_IMG_TAG = re.compile(r"<img\b[^<>]{0,4000}>", re.IGNORECASE)
_INLINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"""<img\b[^<>]{0,2000}?\balt\s*=\s*["']([^"'<>]*)["'][^<>]{0,2000}>""", re.IGNORECASE), r"\1"),
    (re.compile(r"!" + _LABEL + r"(?:" + _URL + r"|\[[^\]]{0,1000}\])?"), r"\1"),
    (re.compile(_LABEL + r"(?:" + _URL + r"|\[[^\]]{0,1000}\])"), r"\1"),
    (re.compile(r"\[\^[^\]]{1,100}\]"), ""),
    (re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+|[^<>\s@]+@[^<>\s@]+)>"), r"\1"),
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),
    (re.compile(r"(\*\*|__)(?=\S)(" + _SPAN + r")(?<=\S)\1"), r"\2"),
    (re.compile(r"~~(?=\S)(" + _SPAN + r")(?<=\S)~~"), r"\1"),
    (re.compile(r"\*(?=[^\s*])(" + _SPAN + r")(?<=[^\s*])\*"), r"\1"),
    (re.compile(r"(?<!\w)_(?=[^\s_])(" + _SPAN + r")(?<=[^\s_])_(?!\w)"), r"\1"),
)


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

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path) -> ExtractedDocument:
        title, source = _front_matter(encoding.decode_text(data))
        references: list[_Reference] = []
        lines, headings = _render(source.split("\n"), references)
        if title is None and headings:
            title = min(headings, key=lambda heading: heading[0])[1]
        text = clean_text("\n".join(lines))
        limits.check_chars(len(text))
        notes: list[str] = []
        images = _images(references, text, path.parent, EmbeddedImages(limits, notes, root))
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, images=images, warnings=notes)


def _front_matter(source: str) -> tuple[str | None, str]:
    """(title, the rest) of a document that opens with YAML (``---``) or TOML (``+++``) front matter, closed by
    the same fence or ``...``; (None, ``source``) when there is none. One pass over the lines, no backtracking."""
    first = source.find("\n")
    fence = source[:first].rstrip(" \t") if first >= 0 else ""
    if fence not in _FRONT_MATTER_FENCES:
        return None, source
    title: str | None = None
    position = first + 1
    while position <= len(source):
        end = source.find("\n", position)
        line = source[position:] if end < 0 else source[position:end]
        if line.rstrip(" \t") in (fence, "..."):
            return title, "" if end < 0 else source[end + 1:]
        title = title or _front_title(line)
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


def _images(references: list[_Reference], text: str, folder: Path,
            images: EmbeddedImages) -> list[ExtractedImage]:
    """The referenced images, each located at its alt text in ``text`` (which shows it in the image's place)."""
    cursor = TextCursor(text)
    for reference in references:
        def described(reference: _Reference = reference) -> dict[str, Any]:
            """The span of the alt text, looked for only when the image is kept."""
            start, end = (reference.alt and cursor.find(reference.alt)) or (cursor.end, cursor.end)
            return {"start": start, "end": end}

        images.add_reference(reference.src, folder, reference.src, described=described, alt=reference.alt,
                             caption=reference.title)
    return images.finish()


def _references(prose: str) -> list[_Reference]:
    """The images of a run of prose, in order of appearance."""
    found: list[tuple[int, _Reference]] = []
    for match in _IMAGE.finditer(prose):
        found.append((match.start(), _Reference(match.group(2), _inline(match.group(1)).strip() or None,
                                                (match.group(3) or "").strip() or None)))
    for match in _IMG_TAG.finditer(prose):
        img = BeautifulSoup(match.group(0), "html.parser").find("img")
        if img is not None:
            src, alt = image_source(img)  # type: ignore[arg-type]
            found.append((match.start(), _Reference(src, alt, None)))
    return [reference for _, reference in sorted(found, key=lambda item: item[0])]


def _render(lines: list[str], references: list[_Reference]) -> tuple[list[str], list[tuple[int, str]]]:
    """Output lines, and the headings as (level, text) in order; fenced code passes through untouched.

    The images met in prose are appended to ``references``.
    """
    out: list[str] = []
    headings: list[tuple[int, str]] = []
    prose: list[str] = []
    fence: tuple[str, int, str, bool] | None = None  # (fence character, length, indentation, in a quote)
    for line in lines:
        quote = _QUOTE.match(line)
        unquoted = line[quote.end():] if quote else line
        if fence is not None:
            char, length, indent, quoted = fence
            code = unquoted if quoted else line
            if re.match(rf"^\s*{re.escape(char)}{{{length},}}\s*$", code):
                out.append("")
                fence = None
            else:
                out.append(code[len(indent):] if code.startswith(indent) else code.lstrip())
            continue
        opening = _FENCE.match(unquoted)
        if opening:
            out.extend(_render_prose(prose, headings, references))
            prose = []
            out.append("")
            fence = (opening.group(2)[0], len(opening.group(2)), opening.group(1), quote is not None)
            continue
        prose.append(line)
    out.extend(_render_prose(prose, headings, references))
    return out, headings


def _render_prose(lines: list[str], headings: list[tuple[int, str]], references: list[_Reference]) -> list[str]:
    """Block and inline markup removed from a run of non-code lines; headings become their own paragraphs.

    Inline markup is removed from the whole run at once, so a link may wrap onto the next line.
    """
    out: list[str] = []
    prose = _COMMENT.sub("", "\n".join(lines))
    references.extend(_references(prose))
    for line in prose.split("\n"):
        line = _QUOTE.sub("", line)
        setext = _SETEXT.match(line)
        if setext and out and out[-1].strip():
            headings.append((1 if setext.group(1)[0] == "=" else 2, _inline(out[-1])))
            out[-1:] = ["", out[-1], ""]
            continue
        if _RULE.match(line) or _LINK_DEFINITION.match(line) or _is_table_delimiter(line):
            out.append("")
            continue
        atx = _ATX.match(line)
        if atx:
            text = _heading_text(line[atx.end():])
            headings.append((len(atx.group(1)), _inline(text)))
            out.extend(["", text, ""])
            continue
        admonition = _ADMONITION.match(line)
        if admonition:
            out.extend(["", admonition.group(1) or "", ""])
            continue
        line = _FOOTNOTE_DEFINITION.sub("", _LIST_MARKER.sub("", line)).strip()
        out.append(_table_row(line) if line.startswith("|") else line)
    return _inline("\n".join(out)).split("\n")


def _heading_text(rest: str) -> str:
    """An ATX heading's text, without the optional closing run of '#'."""
    text = rest.strip()
    bare = text.rstrip("#")
    if bare != text and (not bare or bare[-1] in " \t"):
        return bare.rstrip()
    return text


def _table_row(line: str) -> str:
    """A pipe-table row without its outer pipes, cells joined by ' | '."""
    inner = line[1:]
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return " | ".join(cell.strip() for cell in _CELL_BORDER.split(inner))


def _is_table_delimiter(line: str) -> bool:
    stripped = line.strip()
    return "|" in stripped and "-" in stripped and set(stripped) <= set("|:- \t")


def _inline(text: str) -> str:
    """Inline markup removed; code span contents and escaped characters kept literally.

    Literals are swapped for placeholders first, so that a code span inside link text stays inside it.
    """
    literals: list[str] = []

    def hide(found: re.Match[str]) -> str:
        literals.append(found.group(2) if found.group(1) else found.group(3))
        return f"\ue000{len(literals) - 1}\ue001"

    text = _inline_markup(_LITERAL.sub(hide, text))
    return _PLACEHOLDER.sub(lambda found: literals[int(found.group(1))], text)


def _inline_markup(text: str) -> str:
    for pattern, replacement in _INLINE_RULES:
        text = pattern.sub(replacement, text)
    return html.unescape(text)
