"""Images as knowledge-base units: what describes each one, and the preview that is stored for it."""

from __future__ import annotations

from dataclasses import dataclass

from ingestion.loaders.base import clean_text
from ingestion.loaders.images import bounded, thumbnail_jpeg
from kb.storage.models import PREVIEW_SIDE, text_hash
from kb.types import ExtractedDocument, ExtractedImage

DESCRIPTION_CHARS = 1000  # an image's description is for finding it, not for reading: the nearby text is cut


@dataclass
class Picture:
    """An extracted image ready to store: its description (searchable text) and its JPEG preview."""

    image: ExtractedImage
    description: str
    description_hash: str
    preview: bytes


def describe(image: ExtractedImage, text: str) -> str:
    """The image's alt text, caption and the document text it belongs with, each once, as one searchable text;
    cleaned as a document's text is, whatever the loader left in them (a lone surrogate in alt text reached the
    tokenizer and ended the whole ingest run)."""
    parts: list[str] = []
    for part in (image.alt, image.caption, text[image.start : image.end]):
        part = " ".join(clean_text(part or "").split())
        if part and not any(part in seen for seen in parts):
            parts.append(part)
    return "\n".join(parts)[:DESCRIPTION_CHARS]


def preview_side(width: int, height: int) -> int:
    """The longest side of a preview whose shorter side is ``PREVIEW_SIDE`` (what CLIP crops from), capped at 4x."""
    short, long = sorted((max(width, 1), max(height, 1)))
    return min(round(PREVIEW_SIDE * long / short), 4 * PREVIEW_SIDE)


def cut_to_preview(image: ExtractedImage) -> None:
    """The image's picture cut down to the size of its stored preview (see ``preview_side``)."""
    image.image = bounded(image.image, preview_side(*image.image.size))


def pictures_of(document: ExtractedDocument) -> list[Picture]:
    """The document's images as units to store, in the order the loader found them.

    Each image is cut down to preview size here: CLIP reads no more, ``kb reembed`` re-reads the stored preview,
    and a batch of pending documents does not hold full-size pixels while it waits for the encoder.
    """
    pictures = []
    for image in document.images:
        cut_to_preview(image)
        description = describe(image, document.text)
        pictures.append(Picture(image, description, text_hash(description),
                                thumbnail_jpeg(image.image, max(image.image.size))))
    return pictures

