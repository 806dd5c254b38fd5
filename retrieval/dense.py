"""Dense search in one embedding space, with filters resolved in SQL before the vector search."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kb.encoders.base import TextEncoder
from kb.storage.store import Store
from kb.types import TEXT_SPACE, Filters
from retrieval.filters import allowed_chunk_ids


def dense_search(store: Store, session: Session, encoder: TextEncoder, query: str, k: int,
                 filters: Filters | None = None, space_name: str = TEXT_SPACE) -> list[tuple[int, float]]:
    """Top ``k`` (chunk id, cosine similarity) in ``space_name`` as ``session`` sees the knowledge base."""
    space = store.space(space_name, encoder.identity(), create=False)
    if space is None:
        return []
    index = store.index(space, session)
    allowed = allowed_chunk_ids(session, filters)
    vector = encoder.encode([query])[0]
    return index.search(vector, k, allowed)
