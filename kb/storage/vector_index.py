"""The vector index contract: what every backend of an embedding space's index does.

The database is the truth (``vectors`` holds every vector as float32 bytes); an index is how a space is searched.
Two backends: ``faiss`` (``kb.storage.faiss_index``: an in-memory FAISS index per process, cached on disk, stamped
with the space's generation, brought forward by the change log the write unit keeps, rebuilt from the database when
the log does not reach) and ``pgvector``
(``kb.storage.pgvector_index``: HNSW inside PostgreSQL, nothing to rebuild). ``Store`` picks one by configuration.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
from sqlalchemy.orm import Session

from kb.types import Filters, Modality

IndexKind = Literal["faiss", "pgvector"]
# An approximate index searches a filter passed by at most this many chunks exactly: walking a graph for them would
# return fewer than k or miss some, and measuring that many vectors costs little.
EXACT_BELOW = 20_000


class VectorIndex(Protocol):
    """One space's index, kept in step with the database's generation of that space."""

    space_name: str
    dimension: int
    generation: int  # the space's generation the index reflects; -1 when it must be rebuilt before use

    @property
    def count(self) -> int:
        """Vectors the index holds."""
        ...

    def sync(self, session: Session) -> None:
        """Match what ``session`` sees (load, rebuild, or nothing to do)."""
        ...

    def apply(self, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray, generation: int,
              previous_generation: int) -> None:
        """Apply one committed change (added ids and vectors, removed ids) that moved the space's generation."""
        ...

    def save(self) -> None:
        """Persist whatever the backend keeps outside the database."""
        ...

    def search(self, session: Session, query: np.ndarray, k: int, filters: Filters | None = None,
               modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, similarity) in ``session``'s snapshot among chunks passing the filters."""
        ...
