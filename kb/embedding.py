"""How a stored chunk is embedded into a space, for ``reembed`` and ``doctor``.

The text space holds every chunk with text: text chunks and described images (their description). The CLIP
space holds every chunk: text chunks by CLIP's text tower, images by its image tower from the stored preview
(``kb.storage.reading.members`` says which chunks a space holds).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.storage.reading import Snapshot
from kb.types import TEXT_SPACE

EMBED_BATCH = 256  # chunks embedded (and previews decoded) at a time by reembed and doctor


def embed_stored(snapshot: Snapshot, space_name: str, encoder: TextEncoder | ClipEncoder,
                 chunk_ids: Sequence[int]) -> np.ndarray:
    """Vectors of stored chunks in ``space_name``, in the order of ``chunk_ids``."""
    ordered = snapshot.units(chunk_ids)
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
