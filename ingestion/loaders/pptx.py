"""PowerPoint decks (.pptx) through python-pptx: each slide a page of its text boxes, tables and speaker notes,
with its pictures."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.shapes.picture import Picture

from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, clean_text, join_pages
from ingestion.loaders.images import EmbeddedImages
from ingestion.loaders.ooxml import refuse_bombs
from kb.types import ExtractedDocument

_STREAM_REPR = re.compile(r"file '<_io\.BytesIO object at 0x[0-9a-f]+>'")  # python-pptx names the stream


class _Slide(NamedTuple):
    """What a slide holds: its blocks of text in reading order, its title, its pictures (image bytes and alt text)
    and why any picture could not be read."""

    blocks: list[str]
    title: str | None
    pictures: list[tuple[bytes, str | None]]
    failures: list[str]


class PptxLoader(Loader):
    """Each slide is a page: its title first, then its text boxes and tables from the top of the slide down (left
    to right at the same height; a group's shapes where the group is), a table row per line with cells ' | ', and
    its speaker notes after "Notes:". Pictures come with their alt text and the span of their slide. The title is
    the core properties' title, else the first slide's. Charts and SmartArt diagrams are not read."""

    file_type = "pptx"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        refuse_bombs(data, limits.max_chars, "PPTX")
        try:  # python-pptx reports a broken package with many exception types (zip, XML, missing parts)
            deck = Presentation(io.BytesIO(data))
            title = (deck.core_properties.title or "").strip() or None
            slides = [_slide(slide) for slide in deck.slides]
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception as error:
            reason = _STREAM_REPR.sub("the file", str(error)) or type(error).__name__
            raise LoadError(f"corrupt PPTX: {reason}") from error
        text, pages = join_pages([clean_text("\n\n".join(slide.blocks)) for slide in slides])
        limits.check_chars(len(text))
        title = title or next((slide.title for slide in slides if slide.title), None)
        warnings: list[str] = []
        images = EmbeddedImages(limits, warnings, root, on_kept)
        for page, slide in zip(pages, slides, strict=True):
            for failure in slide.failures:
                images.skip(f"slide {page.number}", failure)
            for number, (blob, alt) in enumerate(slide.pictures, 1):
                images.add_bytes(blob, f"slide {page.number} image {number}", page=page.number, start=page.start,
                                 end=page.end, alt=alt)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages,
                                 images=images.finish(), warnings=warnings)


def _slide(slide: Any) -> _Slide:
    """What a slide holds (see ``_Slide``)."""
    heading = slide.shapes.title
    title = " ".join(heading.text_frame.text.split()) if heading is not None and heading.has_text_frame else None
    blocks: list[str] = [title] if title else []
    pictures: list[tuple[bytes, str | None]] = []
    failures: list[str] = []
    rest = [shape for shape in slide.shapes if heading is None or shape.shape_id != heading.shape_id]
    for shape in _in_reading_order(rest):
        if isinstance(shape, Picture):  # placed pictures and pictures in placeholders
            try:  # a picture linked to a file outside the deck, or whose part is missing, has no bytes here
                pictures.append((shape.image.blob, shape._element._nvXxPr.cNvPr.get("descr") or None))
            except MemoryError:
                raise
            except Exception as error:
                failures.append(f"picture {shape.name[:100]!r} cannot be read: {str(error) or type(error).__name__}")
        elif shape.has_text_frame:
            blocks.append(_lines(paragraph.text for paragraph in shape.text_frame.paragraphs))
        elif shape.has_table:
            blocks.append(_lines(" | ".join(" ".join(cell.text.split()) for cell in row.cells)
                                 for row in shape.table.rows))
    if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None and notes.text.strip():
        blocks.append("Notes: " + _lines(paragraph.text for paragraph in notes.paragraphs))
    return _Slide([block for block in blocks if block.strip()], title, pictures, failures)


def _in_reading_order(shapes: Iterable[Any]) -> Iterator[Any]:
    """Shapes from the top of the slide down, left to right at the same height; a group's shapes in its place."""
    for shape in sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0)):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _in_reading_order(shape.shapes)
        else:
            yield shape


def _lines(texts: Iterable[str]) -> str:
    """Paragraphs one per line, a line break inside one (python-pptx's vertical tab) a line of its own."""
    return "\n".join(text.replace("\v", "\n") for text in texts)
