"""The ``faiss`` vector index backend: a cache of the ``vectors`` table, stamped with the space's generation.

On disk: ``<space>.faiss`` (readable with ``faiss.read_index``) and ``<space>.json`` holding the generation, the
vector count and the SHA-256 of the index file. A missing, stale or corrupt cache is rebuilt from the database
without re-embedding; saves go through a temporary file, fsync and ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb.atomic import write_atomic
from kb.errors import ConfigurationError
from kb.storage.filters import allowed_chunk_ids
from kb.storage.models import Space, Vector
from kb.storage.vector_index import EXACT_BELOW
from kb.types import Filters, Modality

log = logging.getLogger(__name__)
REBUILD_BATCH = 10_000


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FaissIndex:
    """The in-memory FAISS index of one space, kept in step with the database's generation (the contract in
    ``kb.storage.vector_index``)."""

    def __init__(self, directory: Path, space_name: str, dimension: int, factory: str, ef_search: int) -> None:
        self.path = directory / f"{space_name}.faiss"
        self.meta_path = directory / f"{space_name}.json"
        self.space_name = space_name
        self.dimension = dimension
        self.factory = factory
        self.ef_search = ef_search  # candidate list of an HNSW search (see ``hnsw_ef_search``)
        self.generation = -1
        self.index = self._empty()
        self._lock = threading.RLock()

    def _empty(self) -> faiss.Index:
        spec = self.factory if "IDMap" in self.factory else f"IDMap2,{self.factory}"
        try:
            return faiss.index_factory(self.dimension, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ConfigurationError(f"invalid faiss index factory string {self.factory!r}: {error}") from error

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    # -- keeping in step with the database -------------------------------------------------------------------

    def sync(self, session: Session) -> None:
        """Make the index match what ``session`` sees: keep it, load the cache file, or rebuild from stored vectors.

        Inside a read transaction this is the snapshot the rest of a search reads, so dense and keyword results
        come from the same state of the knowledge base.
        """
        with self._lock:
            space = session.scalar(select(Space).where(Space.name == self.space_name))
            if space is None or space.generation == self.generation:
                return
            count = session.scalar(select(func.count()).select_from(Vector).where(Vector.space_id == space.id)) or 0
            if self._load_cache(space.generation, count):
                return
            self._rebuild(session, space)
            try:
                self.save()
            except OSError as error:  # a reader without write access still searches the rebuilt index
                log.warning("could not save index cache %s: %s", self.path, error)

    def read_cache(self, generation: int, count: int) -> tuple[faiss.Index | None, str]:
        """The cached index if it is valid for the database's ``generation`` and vector ``count``, else why not."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, "missing"
        except (OSError, json.JSONDecodeError) as error:
            return None, f"unreadable ({error})"
        if (meta.get("generation"), meta.get("count"), meta.get("factory")) != (generation, count, self.factory):
            return None, (f"stale (cache: {meta.get('count')} vectors at generation {meta.get('generation')}, "
                          f"database: {count} at generation {generation})")
        if _sha256(data) != meta.get("sha256"):
            return None, "corrupt (checksum mismatch)"
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as error:
            return None, f"unreadable ({error})"
        if index.ntotal != count or index.d != self.dimension:
            return None, f"inconsistent ({index.ntotal} vectors of {index.d} dimensions)"
        return index, "ok"

    def _load_cache(self, generation: int, count: int) -> bool:
        index, reason = self.read_cache(generation, count)
        if index is None:
            log.info("index cache %s is %s; rebuilding from the database", self.path.name, reason)
            return False
        self.index, self.generation = index, generation
        return True

    def _rebuild(self, session: Session, space: Space) -> None:
        """Rebuild from the ``vectors`` table (training on all of them when the index type needs it)."""
        ids_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        rows = session.execute(
            select(Vector.chunk_id, Vector.vector).where(Vector.space_id == space.id).order_by(Vector.chunk_id)
        ).yield_per(REBUILD_BATCH)
        for partition in rows.partitions():
            ids_parts.append(np.fromiter((r[0] for r in partition), dtype=np.int64, count=len(partition)))
            vec_parts.append(np.frombuffer(b"".join(r[1] for r in partition), dtype=np.float32))
        index = self._empty()
        if ids_parts:
            ids = np.concatenate(ids_parts)
            vectors = np.concatenate(vec_parts).reshape(-1, self.dimension)
            if not index.is_trained:
                try:
                    index.train(vectors)
                except RuntimeError as error:
                    log.warning("index type %r cannot be trained on %d vectors (%s); searching exactly until "
                                "there are enough", self.factory, len(vectors), error)
                    index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))
            index.add_with_ids(vectors, ids)
        self.index, self.generation = index, space.generation

    # -- changes made by the writer ---------------------------------------------------------------------------

    def apply(self, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray, generation: int,
              previous_generation: int) -> None:
        """Apply one committed change; if this index was not at ``previous_generation`` it is marked stale."""
        with self._lock:
            if self.generation != previous_generation or not self.index.is_trained:
                self.generation = -1  # rebuilt (and trained on every vector) at the next sync
                return
            try:
                if len(removed_ids):
                    self.index.remove_ids(faiss.IDSelectorBatch(removed_ids.astype(np.int64)))
                if len(added_ids):
                    self.index.add_with_ids(added, added_ids.astype(np.int64))
            except RuntimeError as error:  # e.g. HNSW cannot remove: fall back to a rebuild on next sync
                log.info("index %s cannot apply the change in place (%s); will rebuild", self.space_name, error)
                self.generation = -1
                return
            self.generation = generation

    def save(self) -> None:
        """Write the cache atomically: index file first, then the metadata that vouches for it."""
        with self._lock:
            if self.generation < 0:
                return
            data = faiss.serialize_index(self.index).tobytes()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, data)
            meta = {"generation": self.generation, "count": self.count, "sha256": _sha256(data),
                    "dimension": self.dimension, "factory": self.factory}
            write_atomic(self.meta_path, json.dumps(meta).encode())

    # -- reading ----------------------------------------------------------------------------------------------

    def search(self, session: Session, query: np.ndarray, k: int, filters: Filters | None = None,
               modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
        """Top ``k`` in ``session``'s snapshot: filters resolved to chunk ids in SQL, then the vector search."""
        self.sync(session)
        return self.search_ids(query, k, allowed_chunk_ids(session, filters, modalities))

    def search_ids(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, inner product) for one query vector, restricted to ``allowed`` ids if given.

        An HNSW index searches few allowed ids exactly, from the copies its graph keeps: walking the graph for them
        would return fewer than ``k`` or miss some.
        """
        with self._lock:
            if self.count == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
                return []
            query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
            k = min(k, self.count)
            mapped = isinstance(self.index, faiss.IndexIDMap2)  # as built here; a user's factory may say otherwise
            hnsw = isinstance(faiss.downcast_index(self.index.index) if mapped else self.index, faiss.IndexHNSW)
            if hnsw and mapped and allowed is not None and len(allowed) <= EXACT_BELOW:
                return self._exact(query, k, allowed)
            selector = None if allowed is None else faiss.IDSelectorBatch(allowed.astype(np.int64))
            if hnsw:
                params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k), sel=selector)
            else:
                params = None if selector is None else faiss.SearchParameters(sel=selector)
            try:
                scores, ids = self.index.search(query, k, params=params)
            except RuntimeError:  # index types without selector support: over-fetch and filter
                scores, ids = self.index.search(query, min(self.count, k * 20))
                keep = np.isin(ids[0], allowed)
                scores, ids = scores[:, keep][:, :k], ids[:, keep][:, :k]
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        """Exact top ``k`` among the ``allowed`` ids the index holds (their vectors reconstructed)."""
        allowed = allowed.astype(np.int64)
        held = allowed[np.isin(allowed, faiss.vector_to_array(self.index.id_map))]
        if not len(held):
            return []
        scores = self.index.reconstruct_batch(held) @ query[0]
        order = np.lexsort((held, -scores))[:k]
        return [(int(held[i]), float(scores[i])) for i in order]
