"""Dense search in one embedding space, with filters resolved in SQL before the vector search."""

from __future__ import annotations

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
