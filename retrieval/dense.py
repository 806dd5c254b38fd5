"""Dense scores of given chunks from their stored vectors (the search itself is the snapshot's, filters in SQL)."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from kb.storage.models import Space
from kb.storage.reading import Snapshot
from kb.types import Modality


def dense_scores(snapshot: Snapshot, space: Space, vector: np.ndarray, chunk_ids: Collection[int],
                 modality: Modality | None = None) -> list[tuple[int, float]]:
    """Cosine similarity to ``vector`` of the given chunks (of one ``modality`` if given), from their stored vectors:
    the true dense score of a candidate another retriever found. Chunks without a vector in ``space`` are left out."""
    if not chunk_ids:
        return []
    ids, vectors = snapshot.stored_vectors(space, chunk_ids, modality)
    similarities = vectors @ np.asarray(vector, dtype=np.float32)
    return [(chunk_id, float(score)) for chunk_id, score in zip(ids, similarities)]
