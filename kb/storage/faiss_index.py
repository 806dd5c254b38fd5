"""The ``faiss`` vector index backend: a cache of the ``vectors`` table, stamped with the space's generation.

On disk: ``<space>.faiss`` (readable with ``faiss.read_index``) and ``<space>.json`` holding the generation, the
vector count and the SHA-256 of the index file. An index behind the database catches up from the change log
(``vector_changes``: which chunks' vectors changed at each generation; their vectors are read from ``vectors``), at
a cost proportional to the change. Where the log does not reach (too far behind, or across a re-embedding), the
cache is loaded (an older one brought forward by the log) or, missing, stale or corrupt, rebuilt from the database
without re-embedding; saves go through a temporary file, fsync and ``os.replace``.

A removed vector becomes a tombstone: its entry in the index's id map is relabelled with a negative number (an HNSW
graph cannot drop a node, and compacting a flat index moves every vector after it), and every search passes only
ids from 0 up. The labels are part of the index file, so tombstones survive a save and load under its checksum, and
a chunk id added again is a new entry while its old vector stays dead.

Vectors added since the index was loaded or rebuilt wait in a small exact side index, searched with it and merged
into it when saved or when it passes ``RECENT_LIMIT``: adding to a loaded index grows its arrays by copying them (a
loaded index has no room to spare, and FAISS's Python API cannot reserve any), close to a second at 1M vectors, which
would otherwise fall on the first search after the first commit a reading process sees.
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
from kb.config import IndexSettings
from kb.containment import read_own_file
from kb.errors import ConfigurationError, StorageError
from kb.storage.filters import allowed_chunk_ids
from kb.storage.models import Space, Vector, VectorChange
from kb.storage.vector_index import EXACT_BELOW
from kb.types import Filters, Modality

log = logging.getLogger(__name__)
REBUILD_BATCH = 10_000
# Tombstones allowed before the index is compacted (``remove_ids``; an HNSW graph is rebuilt from the database). At a
# quarter, dead entries take at most a third more memory and HNSW walks at most about a third more nodes to fill its
# candidate list, while a graph rebuild (minutes at 1M vectors) comes at most once per quarter of the index removed:
# four insertions' worth of work per removed vector.
TOMBSTONE_SHARE = 0.25
LIVE_BELOW = 2**62  # every chunk id is below; tombstones are negative
# Vectors the side index holds before they are merged into the index: searching them exactly costs about a
# millisecond at 384 dimensions, and a merge (which may copy the whole index once) comes at most once per this many.
RECENT_LIMIT = 10_000
META_BYTES = 1 << 20  # of a cache's metadata file (a save writes about 200)
CACHE_SLACK = 256 << 20


def _largest_cache(count: int, dimension: int) -> int:
    """Bytes beyond which a file cannot be the cache of ``count`` vectors (older caches hold more than the database
    now does, so the bound is loose): each vector takes 4 bytes a dimension, 8 for its id and, in an HNSW graph, 256
    for its links at M=32; four times that, plus ``CACHE_SLACK`` for an IVF's centroids. A sparse file of 100 GB
    would otherwise be read whole."""
    return CACHE_SLACK + 4 * count * (4 * dimension + 8 + 512)


def _sha256(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def _labels(index: faiss.Index) -> np.ndarray:
    """The id map of an ``IDMap`` index (chunk ids; tombstones negative), as a view that writes through to it."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    return faiss.rev_swig_ptr(index.id_map.data(), index.id_map.size())


class FaissIndex:
    """The in-memory FAISS index of one space, kept in step with the database's generation (the contract in
    ``kb.storage.vector_index``)."""

    def __init__(self, directory: Path, space_name: str, dimension: int, settings: IndexSettings) -> None:
        self.path = directory / f"{space_name}.faiss"
        self.meta_path = directory / f"{space_name}.json"
        self.space_name = space_name
        self.dimension = dimension
        self.factory = settings.factory
        self.ef_search = settings.hnsw_ef_search  # candidate list of an HNSW search
        self.ef_construction = settings.hnsw_ef_construction  # of an HNSW build; None: FAISS's own
        self.generation = -1
        self.index = self._empty()
        self.recent = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))  # added since loaded or rebuilt, exact
        self.tombstones = 0  # removed vectors still in the index (negative labels)
        self._where: np.ndarray | None = None  # entry of each chunk id, -1: none (4 bytes an id up to the largest)
        self._lock = threading.RLock()

    def _empty(self) -> faiss.Index:
        spec = self.factory if "IDMap" in self.factory else f"IDMap2,{self.factory}"
        try:
            index = faiss.index_factory(self.dimension, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ConfigurationError(f"invalid faiss index factory string {self.factory!r}: {error}") from error
        graph = faiss.downcast_index(index.index)
        if self.ef_construction is not None and isinstance(graph, faiss.IndexHNSW):
            graph.hnsw.efConstruction = self.ef_construction
        return index

    @property
    def count(self) -> int:
        """Vectors the index holds, tombstones left out, the side index's included."""
        return int(self.index.ntotal) - self.tombstones + int(self.recent.ntotal)

    def _use(self, index: faiss.Index, generation: int) -> None:
        """Search ``index`` from now on, as of ``generation`` (its tombstones counted, its positions read: a load
        or rebuild costs what the index holds anyway, so the changes after it need not)."""
        self.index, self.generation, self._where = index, generation, None
        self.recent.reset()
        self.tombstones = int(np.count_nonzero(_labels(index) < 0))
        self._positions()

    def _positions(self, largest: int = 0) -> np.ndarray:
        """Each chunk id's entry in the index (-1: none, or in the side index), indexable up to ``largest``: read
        from the id map when the index is set (FAISS does not expose its own reverse map), then kept, so that a
        change costs what it changes."""
        if self._where is None:
            labels = _labels(self.index)
            live = np.flatnonzero(labels >= 0)
            self._where = np.full(int(labels.max(initial=0)) + 1, -1, dtype=np.int32)
            self._where[labels[live]] = live
        if largest >= len(self._where):
            grown = np.full(max(largest + 1, 2 * len(self._where)), -1, dtype=np.int32)
            grown[: len(self._where)] = self._where
            self._where = grown
        return self._where

    # -- keeping in step with the database -------------------------------------------------------------------

    def sync(self, session: Session) -> None:
        """Make the index match what ``session`` sees: keep it, catch up from the change log, load the cache file
        (an older one caught up from its generation), or rebuild from stored vectors.

        Inside a read transaction this is the snapshot the rest of a search reads, so dense and keyword results
        come from the same state of the knowledge base; only an index already past the snapshot (a commit applied
        while the search ran) is searched as it is.
        """
        with self._lock:
            space = session.scalar(select(Space).where(Space.name == self.space_name))
            if space is None or space.generation == self.generation or self._catch_up(session, space):
                return
            if space.generation < self.generation:
                # A snapshot begun before a commit this process has applied already: search the newer index
                # (hits whose rows the snapshot lacks are dropped) rather than rebuild it backwards, a stall on a
                # large index, and save that older index over the newer cache file.
                return
            count = session.scalar(select(func.count()).select_from(Vector).where(Vector.space_id == space.id)) or 0
            if self._load_cache(session, space, count):
                return
            self._rebuild(session, space)
            try:
                self.save()
            except OSError as error:  # a reader without write access still searches the rebuilt index
                log.warning("could not save index cache %s: %s", self.path, error)

    def _catch_up(self, session: Session, space: Space) -> bool:
        """Apply the changes logged after this index's generation, up to the space's: the chunks that changed are
        taken out and those that still have a vector put back with it. False (the caller loads or rebuilds) when
        the log does not describe them all, or when the index must be rebuilt to compact its tombstones."""
        start = self.generation
        if not (space.logged_from <= start < space.generation) or not self.index.is_trained:
            return False
        logged = select(VectorChange.chunk_id).where(VectorChange.space_id == space.id,
                                                     VectorChange.generation > start,
                                                     VectorChange.generation <= space.generation)
        changed = np.fromiter(session.scalars(logged.distinct()), dtype=np.int64)
        rows = session.execute(select(Vector.chunk_id, Vector.vector).where(Vector.space_id == space.id,
                                                                            Vector.chunk_id.in_(logged))).all()
        if (session.scalar(select(Space.logged_from).where(Space.id == space.id)) or 0) > start:
            return False  # pruned while read (on PostgreSQL each statement sees the latest commit): nothing applied
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), self.dimension)
        if not self._change(changed, ids, vectors):
            self.generation = -1
            return False
        self.generation = space.generation
        return True

    def read_cache(self, generation: int, count: int) -> tuple[faiss.Index | None, str]:
        """The cached index if it is valid for the database's ``generation`` and vector ``count``, else why not."""
        index, _, reason = self._read_cache(generation, generation, count)
        return index, reason

    def _read_cache(self, oldest: int, generation: int, count: int) -> tuple[faiss.Index | None, int, str]:
        """The cached index with the generation it reflects, if that is ``generation`` (with ``count`` vectors) or
        an older one from ``oldest`` on (which the change log brings forward), else why not."""
        try:  # planted files are damage too: a symlink, a FIFO or a device is not read, nor a file over any cache
            meta = json.loads(read_own_file(self.meta_path, META_BYTES))
            data = read_own_file(self.path, _largest_cache(count, self.dimension))
        except FileNotFoundError:
            return None, -1, "missing"
        except (OSError, ValueError, RecursionError) as error:  # not JSON (or nested too deep), not UTF-8, too large
            return None, -1, f"unreadable ({error})"
        if not isinstance(meta, dict):  # valid JSON, but not what a save writes: rebuilt like a damaged file
            return None, -1, "unreadable (its metadata is not a JSON object)"
        cached = meta.get("generation")
        current = (cached, meta.get("count")) == (generation, count)
        older = isinstance(cached, int) and oldest <= cached < generation
        if meta.get("factory") != self.factory or not (current or older):
            return None, -1, (f"stale (cache: {meta.get('count')} vectors at generation {cached}, "
                              f"database: {count} at generation {generation})")
        if _sha256(data) != meta.get("sha256"):
            return None, -1, "corrupt (checksum mismatch)"
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as error:
            return None, -1, f"unreadable ({error})"
        live = index.ntotal - int(np.count_nonzero(_labels(index) < 0)) if hasattr(index, "id_map") else -1
        if (current and live != count) or index.d != self.dimension:
            return None, -1, f"inconsistent ({live} vectors of {index.d} dimensions)"
        return index, cached, "ok"

    def _load_cache(self, session: Session, space: Space, count: int) -> bool:
        index, cached, reason = self._read_cache(space.logged_from, space.generation, count)
        if index is not None:
            self._use(index, cached)
            if cached == space.generation or (self._catch_up(session, space) and self.count == count):
                return True
            reason = f"at generation {cached}, not brought to {space.generation} by the change log"
        log.info("index cache %s is %s; rebuilding from the database", self.path.name, reason)
        return False

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
        self._use(index, space.generation)

    # -- changes made by the writer ---------------------------------------------------------------------------

    def apply(self, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray, generation: int,
              previous_generation: int) -> None:
        """Apply one committed change. An index not at ``previous_generation`` stays where it is (its next sync
        catches up from the change log); an untrained one, or one past its share of tombstones that cannot compact,
        is rebuilt at the next sync."""
        with self._lock:
            if not self.index.is_trained:
                self.generation = -1  # rebuilt (and trained on every vector) at the next sync
            elif self.generation == previous_generation:
                changed = np.union1d(removed_ids.astype(np.int64), added_ids.astype(np.int64))
                self.generation = generation if self._change(changed, added_ids, added) else -1

    def _change(self, changed: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> bool:
        """Tombstone what the index holds of the ``changed`` chunks and drop them from the side index, then add
        ``vectors`` under ``ids`` to the side index (merged at ``RECENT_LIMIT``); compact once tombstones pass
        ``TOMBSTONE_SHARE``. False when the index type cannot compact: it must be rebuilt."""
        where = self._positions(int(changed.max(initial=0)))
        held = where[changed]
        held = held[held >= 0]
        _labels(self.index)[held] = -2 - held  # unique (IDMap2 maps each label to one entry), never FAISS's -1
        where[changed] = -1
        self.tombstones += len(held)
        if self.recent.ntotal and len(changed):
            self.recent.remove_ids(faiss.IDSelectorBatch(changed.astype(np.int64)))
        if len(ids):
            self.recent.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        if self.recent.ntotal > RECENT_LIMIT:
            self._merge_recent()
        if self.tombstones <= TOMBSTONE_SHARE * self.index.ntotal:
            return True
        try:
            self.index.remove_ids(faiss.IDSelectorRange(-LIVE_BELOW, 0))
        except RuntimeError as error:  # HNSW cannot remove: rebuilt from the database
            log.info("index %s holds %d tombstones and cannot remove them (%s); will rebuild", self.space_name,
                     self.tombstones, error)
            return False
        self.tombstones, self._where = 0, None  # entries moved
        return True

    def _merge_recent(self) -> None:
        """Move the side index's vectors into the index."""
        ids = _labels(self.recent).copy()
        if not len(ids):
            return
        vectors = self.recent.index.reconstruct_n(0, self.recent.ntotal)
        self._positions(int(ids.max()))[ids] = np.arange(self.index.ntotal, self.index.ntotal + len(ids))
        self.index.add_with_ids(vectors, ids)
        self.recent.reset()

    def save(self) -> None:
        """Write the cache atomically (the side index merged in first): index file first, then the metadata that
        vouches for it."""
        with self._lock:
            if self.generation < 0:
                return
            self._merge_recent()
            if self.path.parent.is_symlink():  # planted: the cache would be written wherever it leads
                raise StorageError(f"{self.path.parent} is a symlink; the index cache is not written through it "
                                   "(remove it: the cache is rebuilt)")
            data = faiss.serialize_index(self.index).tobytes()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, data)
            meta = {"generation": self.generation, "count": self.count, "sha256": _sha256(data),
                    "dimension": self.dimension, "factory": self.factory, "tombstones": self.tombstones}
            write_atomic(self.meta_path, json.dumps(meta).encode())

    # -- reading ----------------------------------------------------------------------------------------------

    def search(self, session: Session, query: np.ndarray, k: int, filters: Filters | None = None,
               modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
        """Top ``k`` in ``session``'s snapshot: filters resolved to chunk ids in SQL, then the vector search."""
        self.sync(session)
        return self.search_ids(query, k, allowed_chunk_ids(session, filters, modalities))

    def search_ids(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, inner product) for one query vector, restricted to ``allowed`` ids if given: the
        index's and the side index's hits merged by score."""
        with self._lock:
            if self.count == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
                return []
            query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
            k = min(k, self.count)
            found = self._search_index(query, k, allowed) if self.index.ntotal > self.tombstones else []
            if not self.recent.ntotal:
                return found
            selector = None if allowed is None else faiss.IDSelectorBatch(allowed.astype(np.int64))
            scores, ids = self.recent.search(query, min(k, self.recent.ntotal),
                                             params=None if selector is None else faiss.SearchParameters(sel=selector))
        found += [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        return sorted(found, key=lambda hit: (-hit[1], hit[0]))[:k]

    def _search_index(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """Top ``k`` of the index itself. An HNSW index searches few allowed ids exactly, from the copies its
        graph keeps: walking the graph for them would return fewer than ``k`` or miss some."""
        mapped = isinstance(self.index, faiss.IndexIDMap2)  # as built here; a user's factory may say otherwise
        hnsw = isinstance(faiss.downcast_index(self.index.index) if mapped else self.index, faiss.IndexHNSW)
        if hnsw and mapped and allowed is not None and len(allowed) <= EXACT_BELOW:
            return self._exact(query, k, allowed)
        selector = faiss.IDSelectorBatch(allowed.astype(np.int64)) if allowed is not None else \
            faiss.IDSelectorRange(0, LIVE_BELOW) if self.tombstones else None
        if hnsw:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k), sel=selector)
        else:
            params = None if selector is None else faiss.SearchParameters(sel=selector)
        try:
            scores, ids = self.index.search(query, k, params=params)
        except RuntimeError:  # index types without selector support: over-fetch and filter
            fetch = k + self.tombstones if allowed is None else k * 20 + self.tombstones
            scores, ids = self.index.search(query, min(self.index.ntotal, fetch))
            keep = ids[0] >= 0 if allowed is None else np.isin(ids[0], allowed)
            scores, ids = scores[:, keep][:, :k], ids[:, keep][:, :k]
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        """Exact top ``k`` among the ``allowed`` ids the index holds (their vectors reconstructed)."""
        allowed = allowed.astype(np.int64)
        where = self._positions(int(allowed.max(initial=0)))
        held = allowed[where[allowed] >= 0]
        if not len(held):
            return []
        scores = self.index.reconstruct_batch(held) @ query[0]
        order = np.lexsort((held, -scores))[:k]
        return [(int(held[i]), float(scores[i])) for i in order]
