"""The embedding spaces a knowledge base builds here, each with the encoder that makes its vectors: new units
embedded with vector reuse by hash (ingestion), stored chunks embedded again (``reembed`` and ``doctor``).

The text space holds every chunk with text: text chunks and described images (their description). The CLIP
space holds every chunk: text chunks by CLIP's text tower, images by its image tower from the stored preview
(``kb.storage.reading.members`` says which chunks a space holds).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
from PIL import Image

from kb.encoders.base import TextEncoder
from kb.encoders.clip import ClipEncoder
from kb.errors import ModelNotFoundError
from kb.storage.models import Space
from kb.storage.reading import Snapshot
from kb.storage.store import Store
from kb.storage.writing import WriteUnit
from kb.types import CLIP_SPACE, TEXT_SPACE

EMBED_BATCH = 256  # chunks embedded (and previews decoded) at a time by reembed and doctor
STOP_CHECK_BATCH = 64  # items an ingest embeds between two looks at a stop request (seconds on a small CPU)


class Embedded(NamedTuple):
    """Vectors per document, and the time the encoder took for them (reused vectors cost none)."""

    vectors: list[np.ndarray]
    encode_seconds: float


@dataclass(frozen=True)
class EmbeddingSpace:
    """One space as configured: its name and the encoder that makes its vectors."""

    name: str
    encoder: TextEncoder | ClipEncoder

    def built_by_another_model(self, stored: Space) -> bool:
        """Whether the stored space's vectors came from another model than this encoder (or another size)."""
        return not self.encoder.identity().built(stored.fingerprint, stored.dimension)

    def embed_stored(self, snapshot: Snapshot, chunk_ids: Sequence[int]) -> np.ndarray:
        """Vectors of stored chunks, in the order of ``chunk_ids``."""
        ordered = snapshot.units(chunk_ids)
        encoder = self.encoder
        if self.name == TEXT_SPACE or not isinstance(encoder, ClipEncoder):
            return encoder.encode([row.text for row in ordered])
        vectors = np.zeros((len(ordered), encoder.identity().dimension), dtype=np.float32)
        texts = [i for i, row in enumerate(ordered) if row.preview is None]
        images = [i for i, row in enumerate(ordered) if row.preview is not None]
        if texts:
            vectors[texts] = encoder.encode([ordered[i].text for i in texts])
        if images:
            vectors[images] = encoder.encode_images([_open(ordered[i].preview) for i in images])
        return vectors

    def embed_reusing(self, store: Store, stored: Space, keys: list[list[str]], items: list[list[Any]],
                      images: bool = False, between: Callable[[], None] = lambda: None,
                      batch_size: int = STOP_CHECK_BATCH) -> Embedded:
        """Vectors of each document's new ``items`` (texts, or pictures when ``images``): an item whose key (its
        text or picture hash) the space already holds, or that is repeated among them, is encoded once.
        ``between`` is called before each slice is encoded (a stop request raises there): ``STOP_CHECK_BATCH``
        items, rounded up to whole batches of the encoder's ``batch_size``, so that no batch is cut short."""
        with store.read() as snapshot:
            vectors = snapshot.vectors_by_hash(stored.id, {key for part in keys for key in part}, images=images)
        missing = {key: item for part_keys, part in zip(keys, items) for key, item in zip(part_keys, part)
                   if key not in vectors}
        seconds = 0.0
        encode = cast(ClipEncoder, self.encoder).encode_images if images else self.encoder.encode
        new_keys, new_items = list(missing), list(missing.values())
        size = batch_size * -(-STOP_CHECK_BATCH // batch_size)
        for start in range(0, len(new_items), size):
            between()
            began = time.perf_counter()
            vectors.update(zip(new_keys[start : start + size], encode(new_items[start : start + size])))
            seconds += time.perf_counter() - began
        empty = np.zeros((0, stored.dimension), dtype=np.float32)
        return Embedded([np.stack([vectors[key] for key in part]) if part else empty for part in keys], seconds)

    def fill(self, unit: WriteUnit, stored: Space, chunk_ids: Sequence[int], batch_size: int = EMBED_BATCH) -> None:
        """Embed stored chunks into the space inside ``unit``, a batch at a time (previews decode a batch at a
        time, so memory stays bounded whatever the knowledge base's size)."""
        for start in range(0, len(chunk_ids), batch_size):
            part = chunk_ids[start : start + batch_size]
            unit.add_vectors(stored.id, part, self.embed_stored(unit.read, part))


def buildable_spaces(encoder: TextEncoder, clip: ClipEncoder | None) -> list[EmbeddingSpace]:
    """The spaces that can be built here: the text space always, the CLIP space when its model loads (otherwise
    its stored vectors are left as they are)."""
    spaces = [EmbeddingSpace(TEXT_SPACE, encoder)]
    if clip is not None:
        try:
            clip.identity()
            spaces.append(EmbeddingSpace(CLIP_SPACE, clip))
        except ModelNotFoundError:
            pass
    return spaces


def _open(preview: bytes) -> Image.Image:
    with Image.open(io.BytesIO(preview)) as image:
        return image.convert("RGB")
