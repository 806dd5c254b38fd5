"""PowerPoint decks (.pptx) through python-pptx: each slide a page of its text boxes, tables and speaker notes,
with its pictures."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pptx.opc.constants import RELATIONSHIP_TYPE
from pptx.opc.package import PartFactory, XmlPart
from pptx.oxml.ns import qn
from pptx.package import Package
from pptx.parts.presentation import PresentationPart
from pptx.presentation import Presentation
from pptx.shapes.group import GroupShape
from pptx.shapes.picture import Picture

from ingestion.loaders.base import CappedWarnings, Limits, Loader, LoadError, OnKept, clean_text, join_pages
from ingestion.loaders.images import EmbeddedImages, describe_error
from ingestion.loaders.ooxml import opened_despite_broken_parts, refuse_bombs
from kb.types import ExtractedDocument


class _Slide(NamedTuple):
    """What a slide holds: its text in reading order, its title, its pictures (image part and alt text) and what
    could not be read on it."""

    text: str
    title: str | None
    pictures: list[tuple[Any, str | None]]
    failures: list[str]


_EMPTY = _Slide("", None, [], [])
_PICTURE_FILL = f"{qn('p:spPr')}/{qn('a:blipFill')}"  # a shape filled with a picture
_BLIP, _TILE, _EMBED = qn("a:blip"), qn("a:tile"), qn("r:embed")
# PowerPoint's shows and templates (.ppsx, .potx, and their macro-enabled .ppsm, .potm) hold the main part of a .pptx
# under content types of their own, which python-pptx's Presentation() refuses: that part is read as a deck's.
PartFactory.part_type_for.update(dict.fromkeys((
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
    "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
    "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
    "application/vnd.ms-powerpoint.template.macroEnabled.main+xml"), PresentationPart))


class PptxLoader(Loader):
    """Each slide is a page, numbered as the deck's slides: its title first, then its shapes in the slide's own
    reading order (the order PowerPoint's selection pane and screen readers follow; a group's shapes where the
    group is): text boxes, tables (a row per line, cells ' | '), then its speaker notes after "Notes:". Pictures
    come with their alt text and the span of their slide. The title is the core properties' title, else the first
    slide's. Charts and SmartArt diagrams are not read; a shape or a slide that cannot be read is a warning."""

    file_type = "pptx"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        refuse_bombs(data, limits.max_chars, "PPTX")
        warnings: list[str] = []
        try:  # python-pptx reports a broken package with many exception types (zip, XML, missing parts)
            deck = opened_despite_broken_parts(data, _opened, warnings)
            slides = list(deck.slides)
        except (LoadError, MemoryError):  # (a memory error: the file is over the memory budget, the reason)
            raise
        except Exception as error:
            raise LoadError(f"corrupt PPTX: {describe_error(error)}") from error
        if len(slides) > limits.max_pages:
            warnings.append(f"only the first {limits.max_pages} of {len(slides)} slides were read (max_pages)")
        read = _read_slides(slides[: limits.max_pages], limits, warnings)
        text, pages = join_pages([slide.text for slide in read])
        images = EmbeddedImages(limits, warnings, root, on_kept)
        hashes: dict[int, str] = {}  # a picture part's hash, by part: one part shown on every slide is hashed once
        for page, slide in zip(pages, read, strict=True):
            for number, (part, alt) in enumerate(slide.pictures, 1):
                name = f"slide {page.number} image {number}"
                if images.full:
                    images.beyond_limits(1)
                    continue
                if id(part) not in hashes:
                    hashes[id(part)] = hashlib.sha256(part.blob).hexdigest()
                images.add_bytes(part.blob, name, sha256=hashes[id(part)], page=page.number, start=page.start,
                                 end=page.end, alt=alt)
        title = _core_title(deck) or next((slide.title for slide in read if slide.title), None)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages,
                                 images=images.finish(), warnings=warnings)


def _opened(data: bytes) -> Presentation:
    """The deck in a package (any of its kinds); ``LoadError`` for a package of something else."""
    part = Package.open(io.BytesIO(data)).main_document_part
    if not isinstance(part, PresentationPart):
        raise LoadError(f"not a PowerPoint presentation: its main part is {part.content_type}")
    return part.presentation


def _read_slides(slides: list[Any], limits: Limits, warnings: list[str]) -> list[_Slide]:
    """What each slide holds, its text counted against ``limits.max_chars`` slide by slide; a slide part listed
    again is read once (a deck listing one slide of 10,000 text boxes 20 times took 23 s) and is an empty page,
    and so are notes that slides share (20 slides sharing notes of a million paragraphs took 115 s)."""
    read: list[_Slide] = []
    parts: set[int] = set()
    notes: set[int] = set()
    length = 0
    unreadable = CappedWarnings(warnings, "{} more slide(s) or shape(s) could not be read")
    for number, slide in enumerate(slides, 1):
        if id(slide.part) in parts:
            read.append(_EMPTY)
            continue
        parts.add(id(slide.part))
        try:  # a slide whose layout or parts are missing or broken loses only itself
            found = _slide(slide, notes)
        except MemoryError:
            raise
        except Exception as error:
            unreadable.add(f"slide {number} cannot be read: {describe_error(error)}")
            found = _EMPTY
        for failure in found.failures:
            unreadable.add(f"slide {number}: {failure}")
        length += len(found.text) + 2
        limits.check_chars(length)
        read.append(found)
    unreadable.finish()
    return read


def _slide(slide: Any, notes_read: set[int]) -> _Slide:
    """What a slide holds (see ``_Slide``); its notes only when their part is not in ``notes_read`` (then added)."""
    heading = slide.shapes.title
    title = " ".join(heading.text_frame.text.split()) if heading is not None and heading.has_text_frame else None
    blocks: list[str] = [title] if title else []
    pictures: list[tuple[Any, str | None]] = []
    failures: list[str] = []  # (capped by the caller)
    for shape in _in_reading_order(slide.shapes):
        if heading is not None and shape.shape_id == heading.shape_id:
            continue
        try:  # a shape python-pptx does not know (no geometry, a content part), or a picture without its part
            if isinstance(shape, Picture):  # placed pictures and pictures in placeholders
                pictures.append(_picture(shape, shape._element.blip_rId))
            elif shape.has_text_frame and shape._element.txBody is not None:  # (asking for a text frame adds one)
                blocks.append(_lines(paragraph.text for paragraph in shape.text_frame.paragraphs))
            elif shape.has_table:
                blocks.append(_lines(" | ".join(" ".join(cell.text.split()) for cell in row.cells)
                                     for row in shape.table.rows))
            if (part_id := _filled_with(shape)) is not None:
                pictures.append(_picture(shape, part_id))
        except MemoryError:
            raise
        except Exception as error:
            name = str(getattr(shape, "name", ""))[:100]
            failures.append(f"shape {name!r} cannot be read: {describe_error(error)}")
    try:  # broken notes (a part emptied by the repair) lose only themselves, once for all the slides sharing them
        if slide.has_notes_slide and id((notes_slide := slide.notes_slide).part) not in notes_read:
            notes_read.add(id(notes_slide.part))
            if (notes := notes_slide.notes_text_frame) is not None and notes.text.strip():
                blocks.append("Notes: " + _lines(paragraph.text for paragraph in notes.paragraphs))
    except MemoryError:
        raise
    except Exception as error:
        failures.append(f"its notes cannot be read: {describe_error(error)}")
    return _Slide(clean_text("\n\n".join(block for block in blocks if block.strip())), title, pictures, failures)


def _filled_with(shape: Any) -> str | None:
    """The id of the part of the picture a shape is filled with (a photo cropped to a shape); None without a picture
    fill, for a tiled texture, and for a linked picture (not in the file)."""
    fill = shape._element.find(_PICTURE_FILL)
    if fill is None or fill.find(_TILE) is not None:
        return None
    blip = fill.find(_BLIP)
    return None if blip is None else blip.get(_EMBED) or None


def _picture(shape: Any, part_id: str) -> tuple[Any, str | None]:
    """The part of a shape's picture (named by ``part_id``) and the shape's alt text."""
    part = shape.part.related_part(part_id)
    if isinstance(part, XmlPart):  # its bytes are made again from its XML on every read
        raise LoadError("it names a part of the deck's XML, not a picture")
    return part, shape._element._nvXxPr.cNvPr.get("descr") or None


def _in_reading_order(shapes: Iterable[Any]) -> Iterator[Any]:
    """Shapes in the slide's own order (its XML's, which PowerPoint's selection pane shows and screen readers read),
    a group's shapes in its place."""
    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _in_reading_order(shape.shapes)
        else:
            yield shape


def _core_title(deck: Any) -> str | None:
    """The deck's core properties' title; None without the part (python-pptx would make one up)."""
    try:
        properties = deck.part.package.part_related_by(RELATIONSHIP_TYPE.CORE_PROPERTIES)
        return (properties.title or "").strip() or None
    except MemoryError:
        raise
    except Exception:  # no such part, or another part in its place: no title of its own
        return None


def _lines(texts: Iterable[str]) -> str:
    """Paragraphs one per line, a line break inside one (python-pptx's vertical tab) a line of its own."""
    return "\n".join(text.replace("\v", "\n") for text in texts)
