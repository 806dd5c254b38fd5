"""What each embedding space holds and how a stored chunk is embedded into it, for ``reembed`` and ``doctor``.

The text space holds every chunk with text: text chunks and described images (their description). The CLIP
space holds every chunk: text chunks by CLIP's text tower, images by its image tower from the stored preview.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image
from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.storage.models import Chunk, StoredImage
from kb.types import TEXT_SPACE

EMBED_BATCH = 256  # chunks embedded (and previews decoded) at a time by reembed and doctor


def members(space_name: str) -> ColumnElement[bool]:
    """The condition on ``chunks`` for the chunks that have a vector in ``space_name``."""
    return Chunk.text != "" if space_name == TEXT_SPACE else true()


def embed_stored(session: Session, space_name: str, encoder: TextEncoder | ClipEncoder,
                 chunk_ids: Sequence[int]) -> np.ndarray:
    """Vectors of stored chunks in ``space_name``, in the order of ``chunk_ids``."""
    rows = {row.id: row for row in session.execute(
        select(Chunk.id, Chunk.modality, Chunk.text, StoredImage.preview)
        .outerjoin(StoredImage, StoredImage.chunk_id == Chunk.id).where(Chunk.id.in_(list(chunk_ids))))}
    ordered = [rows[chunk_id] for chunk_id in chunk_ids]
    if space_name == TEXT_SPACE or not isinstance(encoder, ClipEncoder):
        return encoder.encode([row.text for row in ordered])
    vectors = np.zeros((len(ordered), encoder.identity().dimension), dtype=np.float32)
    texts = [i for i, row in enumerate(ordered) if row.preview is None]
    images = [i for i, row in enumerate(ordered) if row.preview is not None]
    if texts:
        vectors[texts] = encoder.encode([ordered[i].text for i in texts])
    if images:
        vectors[images] = encoder.encode_images([_open(ordered[i].preview) for i in images])
    return vectors


def _open(preview: bytes) -> Image.Image:
    with Image.open(io.BytesIO(preview)) as image:
        return image.convert("RGB")
