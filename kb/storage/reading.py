"""Read snapshots: every query a search, a report or a check makes, from one state of the knowledge base.

A ``Snapshot`` wraps one read transaction. Inside it the vector indexes are synced to the generation it sees, so
dense and keyword results, and the chunk rows they are turned into, never mix two commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, Row, and_, func, or_, select, true
from sqlalchemy.orm import Session

from kb.storage import bm25, pgvector_index
from kb.storage.models import INGESTED, Chunk, Document, Meta, Posting, Run, Source, Space, StoredImage, Vector
from kb.types import TEXT_SPACE, Filters, Modality

if TYPE_CHECKING:
    from kb.storage.store import Store

BATCH = bm25.BATCH  # ids per IN (...) list: a statement's parameters are bounded (65,535 on PostgreSQL)
MAX_DIMENSION = 2**24  # no embedding is longer; four times a dimension written from outside may overflow SQL's integers

# Rows whose parent is gone, as doctor finds and removes them: (table, condition).
ORPHANS: dict[str, tuple[type, ColumnElement[bool]]] = {
    "orphan chunks": (Chunk, ~Chunk.document_id.in_(select(Document.id))),
    "orphan vectors": (Vector, ~Vector.chunk_id.in_(select(Chunk.id))),
    "orphan postings": (Posting, ~Posting.chunk_id.in_(select(Chunk.id))),
}


def members(space_name: str) -> ColumnElement[bool]:
    """The condition on ``chunks`` for the chunks that have a vector in ``space_name``: the text space holds every
    chunk with text (text chunks and described images), the CLIP space every chunk."""
    return Chunk.text != "" if space_name == TEXT_SPACE else true()


class Snapshot:
    """One read transaction of the knowledge base (see the module's docstring)."""

    def __init__(self, session: Session, store: Store) -> None:
        self.session = session
        self.store = store

    # -- spaces and vectors ----------------------------------------------------------------------------------

    def space(self, name: str) -> Space | None:
        return self.session.scalar(select(Space).where(Space.name == name))

    def spaces(self) -> list[Space]:
        return list(self.session.scalars(select(Space).order_by(Space.id)))

    def generation(self, space: Space) -> int:
        return self.session.scalar(select(Space.generation).where(Space.id == space.id)) or 0

    def chunk_modalities(self) -> frozenset[str]:
        return self.store.chunk_modalities(self.session)

    def vector_count(self, space: Space) -> int:
        return self.session.scalar(select(func.count()).select_from(Vector).where(Vector.space_id == space.id)) or 0

    def malformed_vectors(self, space: Space) -> list[int]:
        """Chunks whose vector in ``space`` cannot be used: float32 bytes of another length than the space's
        dimension (no index can be built from them), with FAISS values that are not finite (a NaN vector is never
        found, and no check saw it), or with pgvector no embedding or one of another dimension."""
        length = 4 * min(int(space.dimension), MAX_DIMENSION + 1)  # beyond it (written from outside): none fits
        condition = func.length(Vector.vector) != length
        if self.store.vector_index == "pgvector":
            condition = or_(condition, pgvector_index.unsearchable(space.dimension))
        found = list(self.session.scalars(select(Vector.chunk_id).where(Vector.space_id == space.id, condition)
                                          .order_by(Vector.chunk_id)))
        if self.store.vector_index == "pgvector":  # (pgvector stores no NaN)
            return found
        query = (select(Vector.chunk_id, Vector.vector).where(Vector.space_id == space.id,
                                                              func.length(Vector.vector) == length)
                 .execution_options(yield_per=BATCH))
        for rows in self.session.execute(query).partitions():
            matrix = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32).reshape(len(rows), -1)
            found += [rows[index].chunk_id for index in np.flatnonzero(~np.isfinite(matrix).all(axis=1))]
        return sorted(found)

    def dense_search(self, space: Space, vector: np.ndarray, k: int, filters: Filters | None = None,
                     modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, cosine similarity) to ``vector`` in ``space``, filters resolved in SQL first."""
        return self.store.index(space, self.session).search(self.session, vector, k, filters, modalities)

    def stored_vectors(self, space: Space, chunk_ids: Collection[int],
                       modality: Modality | None = None) -> tuple[list[int], np.ndarray]:
        """The stored vectors of these chunks in ``space`` (of one ``modality`` if given), as ids and a matrix;
        chunks without a vector there are left out."""
        ids: list[int] = []
        blobs: list[bytes] = []
        wanted = sorted(set(chunk_ids))
        for start in range(0, len(wanted), BATCH):
            query = select(Vector.chunk_id, Vector.vector).where(Vector.space_id == space.id,
                                                                 Vector.chunk_id.in_(wanted[start : start + BATCH]))
            if modality is not None:
                query = query.join(Chunk, Chunk.id == Vector.chunk_id).where(Chunk.modality == modality)
            for chunk_id, blob in self.session.execute(query):
                ids.append(int(chunk_id))
                blobs.append(blob)
        return ids, np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), space.dimension)

    def vector_ids(self, space: Space, modality: Modality | None = None) -> list[int]:
        """Chunk ids with a vector in ``space`` (of one ``modality``), in order."""
        query = select(Vector.chunk_id).where(Vector.space_id == space.id).order_by(Vector.chunk_id)
        if modality is not None:
            query = query.join(Chunk, Chunk.id == Vector.chunk_id).where(Chunk.modality == modality)
        return list(self.session.scalars(query))

    def vectors_by_hash(self, space_id: int, hashes: set[str], images: bool = False) -> dict[str, np.ndarray]:
        """Stored vectors in a space, one per hash: of text chunks by text hash, or of images by picture hash."""
        key = StoredImage.sha256 if images else Chunk.text_hash
        found: dict[str, np.ndarray] = {}
        wanted = sorted(hashes)
        for start in range(0, len(wanted), BATCH):
            query = select(key, Vector.vector).select_from(Chunk).join(Vector, Vector.chunk_id == Chunk.id)
            query = query.join(StoredImage, StoredImage.chunk_id == Chunk.id) if images else \
                query.where(Chunk.modality == "text")
            rows = self.session.execute(query.where(Vector.space_id == space_id,
                                                    key.in_(wanted[start : start + BATCH])))
            found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def member_ids(self, space_name: str, missing_in: Space | None = None) -> list[int]:
        """Chunks the space ``space_name`` should hold (only those without a vector in ``missing_in``), in order."""
        query = select(Chunk.id).where(members(space_name)).order_by(Chunk.id)
        if missing_in is not None:
            query = query.where(~Chunk.id.in_(select(Vector.chunk_id).where(Vector.space_id == missing_in.id)))
        return list(self.session.scalars(query))

    def units(self, chunk_ids: Sequence[int]) -> list[Row[Any]]:
        """Stored chunks as (id, modality, text, preview) in the order of ``chunk_ids``: what embedding needs."""
        rows = {row.id: row for row in self.session.execute(
            select(Chunk.id, Chunk.modality, Chunk.text, StoredImage.preview)
            .outerjoin(StoredImage, StoredImage.chunk_id == Chunk.id).where(Chunk.id.in_(list(chunk_ids))))}
        return [rows[chunk_id] for chunk_id in chunk_ids]

    def chunk_texts(self) -> list[tuple[int, str]]:
        return [(chunk_id, text) for chunk_id, text in
                self.session.execute(select(Chunk.id, Chunk.text).order_by(Chunk.id))]

    # -- keywords --------------------------------------------------------------------------------------------

    def bm25(self, terms: Sequence[str], limit: int, filters: Filters | None = None,
             modalities: frozenset[Modality] | None = None,
             chunk_ids: Collection[int] | None = None) -> list[tuple[int, float]]:
        """Top ``limit`` chunks by BM25 of ``terms`` divided by the query's attainable maximum, in [0, 1], among
        the chunks passing ``filters`` and ``modalities`` (or among ``chunk_ids``): see ``kb.storage.bm25``."""
        return bm25.search(self.session, terms, limit, filters, modalities, chunk_ids, self.store.posting_cache)

    def meta(self, key: str) -> str | None:
        return self.session.scalar(select(Meta.value).where(Meta.key == key))

    def meta_with_prefix(self, prefix: str) -> list[str]:
        return list(self.session.scalars(select(Meta.value).where(Meta.key.startswith(prefix)).order_by(Meta.key)))

    # -- hits ------------------------------------------------------------------------------------------------

    def hit_rows(self, chunk_ids: Collection[int]) -> dict[int, Row[Any]]:
        """Each chunk with its document's path and title and its image's facts, by chunk id."""
        wanted = sorted(chunk_ids)
        query = select(Chunk.id, Chunk.document_id, Chunk.text, Chunk.start, Chunk.end, Chunk.page,
                       Chunk.modality, Document.path, Document.title, StoredImage.name, StoredImage.width,
                       StoredImage.height, StoredImage.sha256) \
            .join(Document, Document.id == Chunk.document_id).outerjoin(StoredImage, StoredImage.chunk_id == Chunk.id)
        return {row.id: row for start in range(0, len(wanted), BATCH)
                for row in self.session.execute(query.where(Chunk.id.in_(wanted[start : start + BATCH])))}

    def images_near(self, chunk_ids: Collection[int]) -> list[int]:
        """Image chunks in the same document as these chunks, their span overlapping the chunk's (an image with an
        empty span, placed between two texts, belongs with the chunk it sits in or at whose end it stands: a
        picture after a paragraph, or after a document's last words)."""
        text = select(Chunk.document_id, Chunk.start, Chunk.end).where(Chunk.id.in_(sorted(chunk_ids))).subquery()
        overlaps = and_(Chunk.start < text.c.end, Chunk.end > text.c.start)
        sits_inside = and_(Chunk.start == Chunk.end, Chunk.start >= text.c.start, Chunk.start <= text.c.end)
        return list(self.session.scalars(
            select(Chunk.id).join(text, text.c.document_id == Chunk.document_id)
            .where(Chunk.modality == "image", or_(overlaps, sits_inside)).order_by(Chunk.id).distinct()))

    def image_preview(self, chunk_id: int) -> bytes | None:
        return self.session.scalar(select(StoredImage.preview).where(StoredImage.chunk_id == chunk_id))

    # -- documents, sources, runs ----------------------------------------------------------------------------

    def documents_under(self, prefix: str) -> list[Row[Any]]:
        """Every document whose path starts with ``prefix`` (compared exactly: SQL LIKE would ignore case and mix
        up /Docs and /docs), with what tells whether its file (or a file it shows) changed, and its source."""
        return list(self.session.execute(
            select(Document.path, Document.id, Document.size, Document.mtime_ns, Document.content_hash,
                   Document.status, Document.error, Document.source_id, Document.warnings, Document.referenced_files)
            .where(func.substr(Document.path, 1, len(prefix)) == prefix)))

    def document_files(self) -> list[tuple[int, str, str]]:
        """(document id, path, its source's folder) of every document."""
        return [(int(i), path, root) for i, path, root in self.session.execute(
            select(Document.id, Document.path, Source.path).join(Source, Source.id == Document.source_id))]

    def documents_by_status(self) -> dict[str, int]:
        return dict(self.session.execute(select(Document.status, func.count()).group_by(Document.status)).all())

    def file_types(self) -> dict[str, int]:
        return dict(self.session.execute(select(Document.file_type, func.count())
                                         .where(Document.status.in_(INGESTED)).group_by(Document.file_type)).all())

    def failed_documents(self) -> list[tuple[str, str | None]]:
        return [(path, error) for path, error in self.session.execute(
            select(Document.path, Document.error).where(Document.status == "failed").order_by(Document.path))]

    def unread_files(self) -> list[tuple[str, str]]:
        """(path, reason) of what each source's last finished run recorded as failed but holds no document: files
        refused before they were read (a name not valid UTF-8, a path too long) and folders it could not list."""
        last = select(func.max(Run.id)).where(Run.finished_at.is_not(None), Run.source_id.is_not(None)) \
            .group_by(Run.source_id)
        recorded = [(failure["path"], failure["reason"]) for failures in self.session.scalars(
            select(Run.failures).where(Run.id.in_(last))) for failure in failures or []]
        paths = sorted({path for path, _ in recorded})
        documents = {path for start in range(0, len(paths), BATCH) for path in self.session.scalars(
            select(Document.path).where(Document.path.in_(paths[start:start + BATCH])))}
        return sorted((path, reason) for path, reason in recorded if path not in documents)

    def empty_documents(self) -> list[str]:
        return list(self.session.scalars(select(Document.path).where(Document.status == "empty")
                                         .order_by(Document.path)))

    def document_warnings(self) -> dict[str, list[str]]:
        """Warnings of ingested documents read only in part, by path."""
        return {path: found for path, found in self.session.execute(
            select(Document.path, Document.warnings).where(Document.status.in_(INGESTED))
            .order_by(Document.path)) if found}

    def count(self, table: str) -> int:
        """Rows in ``chunks`` or ``images``."""
        model = {"chunks": Chunk, "images": StoredImage}[table]
        return self.session.scalar(select(func.count()).select_from(model)) or 0

    def source_mounts(self) -> dict[str, str | None]:
        """Each source's folder and its mounts as its last run recorded them, as JSON text (None before any run
        did)."""
        return {path: mounts for path, mounts in self.session.execute(select(Source.path, Source.mounts))}

    def source_paths(self) -> list[str]:
        return list(self.session.scalars(select(Source.path).order_by(Source.id)))

    def sources(self) -> list[tuple[Source, int, Run | None]]:
        """Every source (by path) with its ingested document count and its last run."""
        counts = dict(self.session.execute(select(Document.source_id, func.count())
                                           .where(Document.status.in_(INGESTED)).group_by(Document.source_id)).all())
        return [(source, counts.get(source.id, 0),
                 self.session.scalar(select(Run).where(Run.source_id == source.id).order_by(Run.id.desc()).limit(1)))
                for source in self.session.scalars(select(Source).order_by(Source.path))]

    def due_sources(self, now: datetime) -> list[str]:
        return list(self.session.scalars(select(Source.path).where(Source.next_run_at.is_not(None),
                                                                   Source.next_run_at <= now)
                                         .order_by(Source.next_run_at)))

    def schedules(self) -> list[tuple[str, str, datetime]]:
        """(folder, schedule, next run) of every scheduled source."""
        return [(path, schedule, planned) for path, schedule, planned in self.session.execute(
            select(Source.path, Source.schedule, Source.next_run_at).where(Source.schedule.is_not(None),
                                                                           Source.next_run_at.is_not(None)))]

    def next_due(self) -> datetime | None:
        return self.session.scalar(select(func.min(Source.next_run_at)))

    def runs(self, limit: int) -> list[tuple[Run, str | None]]:
        """The most recent runs with their source's folder, newest first."""
        return [(run, path) for run, path in self.session.execute(
            select(Run, Source.path).outerjoin(Source, Source.id == Run.source_id).order_by(Run.id.desc())
            .limit(limit))]

    def running_runs(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Run).where(Run.status == "running")) or 0

    def last_finished(self) -> datetime | None:
        return self.session.scalar(select(func.max(Run.finished_at)))

    def keyword_drift(self) -> int:
        """How many kept keyword figures disagree with the postings and chunks (see :func:`bm25.drift`)."""
        return bm25.drift(self.session)

    def orphans(self, kind: str) -> int:
        """How many rows of ``kind`` (a key of ``ORPHANS``) have lost their parent."""
        model, condition = ORPHANS[kind]
        return self.session.scalar(select(func.count()).select_from(model).where(condition)) or 0
