"""One write transaction of the knowledge base: the only way rows, vectors and postings are changed.

A ``WriteUnit`` records the vectors it adds and the chunks it removes. On commit the generations of the spaces it
touched are bumped inside the transaction, together with the change log (``vector_changes``: which chunks' vectors
changed at the new generation), and after the commit the change is applied to the loaded vector indexes (an index
that was not at the previous generation catches up from the log at its next sync, or is rebuilt).
Ingestion, sources, reembed and doctor all write through it, so none of them repeats that protocol by hand.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from kb.config import IndexSettings
from kb.errors import RejectedDataError
from kb.keywords import TermBag
from kb.storage import bm25, pgvector_index
from kb.storage.database import copy_rows
from kb.storage.models import (
    Chunk,
    Document,
    Meta,
    Posting,
    Run,
    Source,
    Space,
    StoredImage,
    Vector,
    VectorChange,
    utcnow,
)
from kb.storage.reading import ORPHANS, Snapshot
from kb.text import storable

MAX_TERM_LENGTH = 128
POSTINGS_PER_INSERT = 50_000  # keyword postings sent to SQLite in one statement
# Generations of each space the change log keeps: a process whose index is at most this many commits behind (at the
# default 256 chunks a commit, an ingest of 256,000 chunks) catches up from the log; one further behind loads its
# cache or rebuilds, as it would without the log. The log holds ids only (bytes a chunk, against 1.5 KB for a
# 384-dimensional vector), and keeping it bounded costs one range delete on its primary key per commit.
LOG_GENERATIONS = 1_000
# A run's history: its failures kept, the first so many (its counts have them all; `kb jobs` shows ten), and the
# runs kept per source, the newest (a schedule every 15 minutes keeps ten days). A folder of 50,000 failing files
# grew the database by 4.8 MB a run, every run storing every failure again, without end.
MAX_RUN_FAILURES = 1_000
RUNS_KEPT = 1_000
KEYWORD_TOKENIZER_KEY = "keyword_tokenizer"
_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}  # INSERT ... ON CONFLICT of each dialect


@dataclass
class Changes:
    """What a unit did to the vector spaces: vectors added per space, chunks removed, spaces touched."""

    added: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    rebuilt: set[int] = field(default_factory=set)  # spaces whose index is rebuilt (every vector replaced, say)

    def mark(self) -> tuple[dict[int, int], int, set[int], set[int]]:
        return {space: len(parts) for space, parts in self.added.items()}, len(self.removed), set(self.touched), \
            set(self.rebuilt)

    def rewind(self, mark: tuple[dict[int, int], int, set[int], set[int]]) -> None:
        """Forget what was recorded since ``mark`` (its savepoint was rolled back)."""
        added, removed, touched, rebuilt = mark
        self.added = {space: parts[: added.get(space, 0)] for space, parts in self.added.items()}
        del self.removed[removed:]
        self.touched, self.rebuilt = touched, rebuilt

    def changed_ids(self, space_id: int) -> np.ndarray:
        """Chunks whose vector in one space this unit added, replaced or removed (removals are every space's)."""
        return np.union1d(np.asarray(self.removed, dtype=np.int64),
                          np.concatenate([np.zeros(0, np.int64), *(ids for ids, _ in self.added.get(space_id, []))]))

    def vectors(self, space_id: int, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and vectors added to one space, as one pair of arrays."""
        parts = self.added.get(space_id, [])
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, dimension), np.float32)
        return np.concatenate([ids for ids, _ in parts]), np.concatenate([vectors for _, vectors in parts])


class WriteUnit:
    """The writer's view of one transaction (see the module's docstring)."""

    def __init__(self, session: Session, all_spaces: Sequence[int], snapshot: Snapshot, *, pgvector: bool,
                 index_settings: IndexSettings) -> None:
        self.session = session
        self.pgvector = pgvector  # vectors also go to ``vectors.embedding``, each space has its HNSW index
        self.bulk = pgvector_index.BulkIndexing(index_settings)  # HNSW indexes taken off while adding many vectors
        self._all_spaces = list(all_spaces)
        self.changes = Changes()
        self.read = snapshot  # reads inside this transaction see its own writes

    # -- the commit protocol ---------------------------------------------------------------------------------

    def bump_generations(self) -> dict[int, tuple[int, int]]:
        """Advance the touched spaces' generations (inside the transaction); returns {space id: (previous, new)}.
        HNSW indexes taken off for a bulk write are built again first, in the same transaction."""
        self.bulk.rebuild(self.session)
        bumps = {}
        for space_id in sorted(self.changes.touched):
            row = self.session.execute(select(Space.generation, Space.logged_from).where(Space.id == space_id)).first()
            previous, logged_from = row if row is not None else (0, 0)  # a space this unit deleted (pgvector)
            if not self.pgvector:  # pgvector's index is the table: no process has anything to catch up
                logged_from = self._log_changes(space_id, previous + 1, logged_from)
            self.session.execute(update(Space).where(Space.id == space_id)
                                 .values(generation=previous + 1, logged_from=logged_from))
            bumps[space_id] = (previous, previous + 1)
        return bumps

    def _log_changes(self, space_id: int, generation: int, logged_from: int) -> int:
        """Record which chunks' vectors in the space changed at ``generation`` and keep the newest
        ``LOG_GENERATIONS``; returns the generation the log now describes every change after. A unit that replaced
        every vector empties the log instead: nothing older can be caught up from."""
        if space_id in self.changes.rebuilt:
            self.session.execute(delete(VectorChange).where(VectorChange.space_id == space_id))
            return generation
        ids = self.changes.changed_ids(space_id).tolist()
        if ids and self.session.get_bind().dialect.name == "postgresql":
            copy_rows(self.session, "vector_changes", ("space_id", "generation", "chunk_id"),
                      ((space_id, generation, chunk_id) for chunk_id in ids))
        elif ids:
            self.session.execute(insert(VectorChange.__table__), [
                {"space_id": space_id, "generation": generation, "chunk_id": chunk_id} for chunk_id in ids])
        oldest = generation - LOG_GENERATIONS
        if oldest <= logged_from:
            return logged_from
        self.session.execute(delete(VectorChange).where(VectorChange.space_id == space_id,
                                                        VectorChange.generation <= oldest))
        return oldest

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the unit that can fail alone: data the database rejects raises ``RejectedDataError`` and
        undoes only this part; a failing database (full, read-only, locked) raises as it is."""
        mark = self.changes.mark()
        try:
            with self.session.begin_nested():
                yield
        except OperationalError as error:
            self.changes.rewind(mark)
            if _over_a_database_limit(error):
                raise RejectedDataError(str(error.orig)) from error
            raise
        except (SQLAlchemyError, UnicodeError, ValueError, OverflowError) as error:  # OverflowError: SQLite's integers
            self.changes.rewind(mark)
            raise RejectedDataError(str(getattr(error, "orig", None) or error)) from error  # not the statement's text

    # -- spaces and settings ---------------------------------------------------------------------------------

    def new_space(self, name: str, model: str, fingerprint: str, dimension: int, normalized: bool) -> Space:
        """A new, empty space, flushed so it has its id."""
        space = Space(name=name, model=model, fingerprint=fingerprint, dimension=dimension, normalized=normalized,
                      generation=0)
        self.session.add(space)
        self.session.flush()
        self._all_spaces.append(space.id)
        if self.pgvector:
            self.bulk.defer(space.id)
        return space

    def space(self, name: str) -> Space | None:
        return self.session.scalar(select(Space).where(Space.name == name))

    def replace_space(self, space: Space, model: str, fingerprint: str, dimension: int, normalized: bool) -> Space:
        """Drop every vector of ``space`` and give it a new encoder identity (its vectors are added again); returns
        the space to add them to. With pgvector that is a new space row, whose HNSW index is built when the unit
        ends: the old index serves searches until the commit (taking it off would lock them out), and an index
        built on the old row would still see the vectors this transaction deleted."""
        self.session.execute(delete(Vector).where(Vector.space_id == space.id))
        self.changes.touched.add(space.id)
        self.changes.rebuilt.add(space.id)
        if self.pgvector:
            self.session.delete(space)
            self.session.flush()
            self._all_spaces.remove(space.id)
            self.bulk.retire(space.id)
            return self.new_space(space.name, model, fingerprint, dimension, normalized)
        space.model, space.fingerprint, space.dimension, space.normalized = model, fingerprint, dimension, normalized
        return space

    def upgrade_fingerprint(self, space_id: int, previous: str, fingerprint: str) -> None:
        """Record the space's encoder fingerprint under the current fingerprint version, where it still holds
        ``previous`` (the same files' fingerprint under the previous version): its vectors are unchanged."""
        self.session.execute(update(Space).where(Space.id == space_id, Space.fingerprint == previous)
                             .values(fingerprint=fingerprint))

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with None, remove) a setting: an upsert, so it never meets a row another writer just added."""
        if value is None:
            self.session.execute(delete(Meta).where(Meta.key == key))
            return
        upsert = _UPSERTS.get(self.session.get_bind().dialect.name)
        if upsert is None:  # another (untested) database: read, then insert or update
            self.session.merge(Meta(key=key, value=value))
            return
        self.session.execute(upsert(Meta).values(key=key, value=value)
                             .on_conflict_do_update(index_elements=[Meta.key], set_={"value": value}))

    def record_keyword_tokenizer(self, name: str) -> None:
        self.set_meta(KEYWORD_TOKENIZER_KEY, name)

    # -- vectors and postings --------------------------------------------------------------------------------

    def add_vectors(self, space_id: int, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        if not len(chunk_ids):
            return
        if self.pgvector:
            added = sum(len(ids) for ids, _ in self.changes.added.get(space_id, []))
            self.bulk.before_adding(self.session, space_id, added + len(chunk_ids))
            pgvector_index.insert_vectors(self.session, space_id, chunk_ids, vectors)
        else:
            self.session.execute(insert(Vector.__table__), [
                {"space_id": space_id, "chunk_id": int(chunk_id), "vector": vector.astype(np.float32).tobytes()}
                for chunk_id, vector in zip(chunk_ids, vectors, strict=True)])
        self.changes.added.setdefault(space_id, []).append(
            (np.asarray(chunk_ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32)))
        self.changes.touched.add(space_id)

    def add_postings(self, chunk_ids: Sequence[int], bags: Sequence[TermBag]) -> None:
        """Keyword postings of freshly inserted chunks: each term's frequency with the chunk's keyword length (its
        number of terms less character terms, as ``keyword_length`` records it), and the terms' document
        frequencies raised. Rows are made as they are sent, ``POSTINGS_PER_INSERT`` at a time on SQLite (PostgreSQL
        streams them into one COPY): a large document's batch held millions of them at once (4.7 GB for 9 MB of
        Chinese)."""
        counted = Counter[str]()

        def rows() -> Iterator[tuple[str, int, int, int]]:
            for chunk_id, bag in zip(chunk_ids, bags, strict=True):
                counts = Counter[str]()
                for term, tf in bag.counts.items():
                    counts[term[:MAX_TERM_LENGTH]] += tf
                for term, tf in counts.items():
                    counted[term] += 1
                    yield term, chunk_id, tf, bag.length

        columns = ("term", "chunk_id", "tf", "length")
        if self.session.get_bind().dialect.name == "postgresql":
            copy_rows(self.session, "postings", columns, rows())
        else:  # Core insert: the ORM's per-row bookkeeping would cost more than the insert itself
            made = rows()
            while part := [dict(zip(columns, row, strict=True)) for row in islice(made, POSTINGS_PER_INSERT)]:
                self.session.execute(insert(Posting.__table__), part)
        if counted:
            bm25.count_terms(self.session, counted)

    def replace_postings(self, chunk_ids: Sequence[int], bags: Sequence[TermBag], first: bool) -> None:
        """Rebuild the keyword index in parts: the first part drops every posting (and counts the keyword figures
        afresh); each sets its chunks' lengths."""
        if first:
            self.session.execute(delete(Posting))
            bm25.recount(self.session)
            bm25.advance(self.session)
        self.add_postings(chunk_ids, bags)
        if chunk_ids:
            before = self.session.scalar(select(func.coalesce(func.sum(Chunk.keyword_length), 0))
                                         .where(Chunk.id.in_(list(chunk_ids)))) or 0
            lengths = [bag.length for bag in bags]
            self.session.execute(update(Chunk), [{"id": chunk_id, "keyword_length": length}
                                                 for chunk_id, length in zip(chunk_ids, lengths, strict=True)])
            bm25.count_chunks(self.session, 0, sum(lengths) - int(before))

    # -- the one delete path ---------------------------------------------------------------------------------

    def delete_chunks(self, chunk_ids: Iterable[int]) -> list[int]:
        """Remove chunks with their vectors (every space), keyword postings and images; returns the ids removed."""
        ids = list(chunk_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            bm25.uncount_chunks(self.session, part)
            self.session.execute(delete(Posting).where(Posting.chunk_id.in_(part)))
            self.session.execute(delete(Vector).where(Vector.chunk_id.in_(part)))
            self.session.execute(delete(StoredImage).where(StoredImage.chunk_id.in_(part)))
            self.session.execute(delete(Chunk).where(Chunk.id.in_(part)))
        if ids:
            self.changes.removed += ids
            self.changes.touched.update(self._all_spaces)
        return ids

    def delete_document_content(self, document_id: int) -> list[int]:
        """Remove everything derived from a document, keeping its row; returns the chunk ids removed."""
        return self.delete_chunks(self.session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)))

    def delete_documents(self, document_ids: Iterable[int]) -> list[int]:
        """Remove documents and everything derived from them; returns the chunk ids removed."""
        removed: list[int] = []
        for document_id in document_ids:
            removed += self.delete_document_content(document_id)
            self.session.execute(delete(Document).where(Document.id == document_id))
        if not removed:  # documents without chunks still change what every space's filters allow
            self.changes.touched.update(self._all_spaces)
        return removed

    # -- documents, chunks, images ---------------------------------------------------------------------------

    def insert_documents(self, rows: list[dict[str, Any]]) -> list[int]:
        """New document rows; returns their ids in order."""
        if not rows:
            return []
        return list(self.session.scalars(insert(Document).returning(Document.id, sort_by_parameter_order=True),
                                         rows))

    def update_documents(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite document rows (each with its ``id``)."""
        if rows:
            self.session.execute(update(Document), rows)

    def insert_chunks(self, rows: list[dict[str, Any]]) -> list[int]:
        """New chunk rows; returns their ids in order."""
        if not rows:
            return []
        bm25.count_chunks(self.session, len(rows), sum(int(row.get("keyword_length", 0)) for row in rows))
        return list(self.session.scalars(insert(Chunk).returning(Chunk.id, sort_by_parameter_order=True), rows))

    def insert_images(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(StoredImage.__table__), rows)

    def move_document(self, old_path: str, new_path: str, relpath: str, source_id: int, size: int,
                      mtime_ns: int, modified_at: Any) -> None:
        """Point a document at its new path; its chunks, vectors and postings stay as they are."""
        document = self.session.scalar(select(Document).where(Document.path == old_path))
        assert document is not None
        document.path, document.relpath, document.source_id = new_path, relpath, source_id
        document.size, document.mtime_ns, document.modified_at = size, mtime_ns, modified_at

    def touch_document(self, document_id: int, size: int, mtime_ns: int) -> None:
        """A file whose bytes did not change: new size and time, no error."""
        document = self.session.get(Document, document_id)
        assert document is not None
        document.mtime_ns, document.size, document.error = mtime_ns, size, None

    def record_failure(self, document_id: int, reason: str, size: int, mtime_ns: int, content_hash: str) -> None:
        """A known document's file failed: a good version keeps its content; a failed one takes the new facts."""
        document = self.session.get(Document, document_id)
        assert document is not None
        document.error = storable(reason)
        if document.status == "failed":
            document.size, document.mtime_ns, document.content_hash = size, mtime_ns, content_hash

    def add_failed_document(self, *, error: str, **row: Any) -> None:
        self.session.add(Document(status="failed", warnings=[], text="", pages=[], error=storable(error), **row))

    # -- sources and runs ------------------------------------------------------------------------------------

    def source(self, path: str, create: bool = False) -> Source | None:
        source = self.session.scalar(select(Source).where(Source.path == path))
        if source is None and create:
            source = Source(path=path)
            self.session.add(source)
            self.session.flush()
        return source

    def delete_source(self, source: Source) -> int:
        """Forget a source and delete its documents everywhere, except those the folder of another source holds
        too (sources may be nested, and a document belongs to whichever run wrote it last): they pass to the
        innermost such source instead of waiting, lost, for its next run. Returns how many documents were deleted."""
        others = sorted(self.session.execute(select(Source.id, Source.path).where(Source.id != source.id)).all(),
                        key=lambda other: -len(other.path))  # innermost first
        deleted, handed = [], []
        for document_id, path in self.session.execute(select(Document.id, Document.path)
                                                      .where(Document.source_id == source.id)):
            owner = next((other for other in others if path.startswith(other.path.rstrip(os.sep) + os.sep)), None)
            if owner is None:
                deleted.append(document_id)
            else:  # its relative path as the new source's runs write it (path filters match on it)
                handed.append({"id": document_id, "source_id": owner.id,
                               "relpath": path[len(owner.path.rstrip(os.sep)) + 1:]})
        self.update_documents(handed)
        self.delete_documents(deleted)
        self.changes.touched.update(self._all_spaces)
        self.session.delete(source)
        return len(deleted)

    def record_mounts(self, source_id: int, mounts: str) -> None:
        """Keep a source's mounts as its run found them (``kb.mounts.SourceMounts`` as JSON text)."""
        self.session.execute(update(Source).where(Source.id == source_id).values(mounts=mounts))

    def interrupt_running(self) -> None:
        """Runs still marked running were killed (the caller holds the writer lock)."""
        self.session.execute(update(Run).where(Run.status == "running")
                             .values(status="interrupted", error="the process stopped before the run finished"))

    def start_run(self, source_id: int) -> int:
        run = Run(source_id=source_id)
        self.session.add(run)
        self.session.flush()
        return run.id

    def add_failed_run(self, source_id: int, error: str) -> None:
        self.session.add(Run(source_id=source_id, status="failed", finished_at=utcnow(), error=storable(error)))
        self._forget_old_runs(source_id)

    def finish_run(self, run_id: int, status: str, error: str | None, counts: dict[str, int],
                   failures: list[dict[str, str]]) -> None:
        """Records a run's outcome: its first ``MAX_RUN_FAILURES`` failures (``counts`` has them all)."""
        run = self.session.get(Run, run_id)
        assert run is not None
        run.status, run.finished_at, run.counts = status, utcnow(), counts
        run.error = None if error is None else storable(error)
        run.failures = [{**failure, "reason": storable(failure["reason"])} for failure in failures[:MAX_RUN_FAILURES]]
        if run.source_id is not None:
            self._forget_old_runs(run.source_id)

    def _forget_old_runs(self, source_id: int) -> None:
        """Deletes a source's finished runs older than its newest ``RUNS_KEPT``."""
        self.session.flush()
        oldest_kept = self.session.scalar(select(Run.id).where(Run.source_id == source_id).order_by(Run.id.desc())
                                          .offset(RUNS_KEPT - 1).limit(1))
        if oldest_kept is not None:
            self.session.execute(delete(Run).where(Run.source_id == source_id, Run.id < oldest_kept,
                                                   Run.status != "running"))

    # -- repairs (doctor) ------------------------------------------------------------------------------------

    def recount_keywords(self) -> None:
        """Compute the kept keyword figures afresh from the postings and chunks (a repair of their drift)."""
        bm25.recount(self.session)
        bm25.advance(self.session)

    def delete_vectors(self, space_id: int, chunk_ids: Sequence[int]) -> None:
        """Remove some chunks' vectors from one space (malformed ones, to be embedded again); its index is rebuilt
        from the database at its next sync (it could not hold them as they were)."""
        for start in range(0, len(chunk_ids), 500):
            self.session.execute(delete(Vector).where(Vector.space_id == space_id,
                                                      Vector.chunk_id.in_(chunk_ids[start : start + 500])))
        self.changes.touched.add(space_id)
        self.changes.rebuilt.add(space_id)

    def delete_orphans(self, kind: str) -> None:
        """Remove rows whose parent is gone (see ``Snapshot.orphans``)."""
        model, condition = ORPHANS[kind]
        if model is Chunk:
            self.delete_chunks(self.session.scalars(select(Chunk.id).where(condition)).all())
            return
        if model is Posting:  # their terms were counted
            bm25.uncount_postings(self.session, condition)
        if model is Vector:  # they may sit in the indexes too
            self.changes.removed += self.session.scalars(select(Vector.chunk_id).where(condition).distinct()).all()
            self.changes.touched.update(self._all_spaces)
        self.session.execute(delete(model).where(condition))


def _over_a_database_limit(error: OperationalError) -> bool:
    """PostgreSQL's "program limit exceeded" (SQLSTATE class 54: a path longer than a unique index's row can
    hold, say) is about one file's data, not a failing database."""
    return str(getattr(error.orig, "sqlstate", None) or "").startswith("54")
