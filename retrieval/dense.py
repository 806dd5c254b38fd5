"""Dense search in one embedding space, with filters resolved in SQL before the vector search."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from sqlalchemy.orm import Session

from kb.storage.models import Space
from kb.storage.store import Store
from kb.types import Filters, Modality
from retrieval.filters import allowed_chunk_ids


def dense_search(store: Store, session: Session, space: Space, vector: np.ndarray, k: int,
                 filters: Filters | None = None,
                 modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
    """Top ``k`` (chunk id, cosine similarity) to ``vector`` in ``space`` as ``session`` sees the knowledge base."""
    index = store.index(space, session)
    return index.search(vector, k, allowed_chunk_ids(session, filters, modalities))


def dense_scores(session: Session, space: Space, vector: np.ndarray, chunk_ids: Collection[int],
                 modality: Modality | None = None) -> list[tuple[int, float]]:
    """Cosine similarity to ``vector`` of the given chunks (of one ``modality`` if given), from their stored vectors:
    the true dense score of a candidate another retriever found. Chunks without a vector in ``space`` are left out."""
    if not chunk_ids:
        return []
    ids, vectors = Store.stored_vectors(session, space, chunk_ids, modality)
    similarities = vectors @ np.asarray(vector, dtype=np.float32)
    return [(chunk_id, float(score)) for chunk_id, score in zip(ids, similarities)]
