"""The storage of one knowledge base: its SQL database, embedding spaces and their FAISS caches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kb.config import Settings
from kb.encoders.base import EncoderIdentity
from kb.errors import EncoderMismatchError, StorageError
from kb.storage.database import IMMEDIATE, default_url, open_database
from kb.storage.lock import WriterLock
from kb.storage.models import Chunk, Document, Meta, Posting, Space, StoredImage, Vector
from kb.storage.vector_index import VectorIndex

MAX_TERM_LENGTH = 128
KEYWORD_TOKENIZER_KEY = "keyword_tokenizer"
NOTICE_PREFIX = "notice:"
IMAGE_SPACE_OFF = "image space off"  # a standing notice: the CLIP weights could not be had at the last ingest



@dataclass(frozen=True)
class StoredChunk:
    """A text chunk as training material: its text and span in its document's text."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class StoredDocument:
    """An ingested document as training material: path, title, text and its text chunks in order."""

    path: str
    title: str | None
    text: str
    chunks: list[StoredChunk]


@dataclass(frozen=True)
class StoredPicture:
    """An image chunk as training material: its description (caption, alt text, OCR text) and JPEG preview."""

    description: str
    preview: bytes
    path: str


class Store:
    """Database sessions, spaces and vector indexes of the knowledge base in ``directory``."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self.url = settings.database_url or default_url(directory)
        self.sessions: sessionmaker[Session] = open_database(self.url)
        self.writer_lock = WriterLock(directory / "write.lock")
        self._indexes: dict[int, VectorIndex] = {}
        self._keyword_tokenizer_checked: str | None = None

    def close(self) -> None:
        self.sessions.kw["bind"].dispose()

    # -- spaces ---------------------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction. On SQLite it takes the write lock at BEGIN (IMMEDIATE), so a short write beside a
        running ingest waits its turn (busy_timeout) instead of failing on a stale snapshot.

        A database that cannot be written (read-only, disk full) raises ``StorageError`` naming the cause.
        """
        try:
            with self.sessions.begin() as session:
                session.connection(execution_options={IMMEDIATE: True})
                yield session
        except OperationalError as error:
            raise StorageError(f"the database cannot be written: {error.orig or error}") from error

    @staticmethod
    def new_space(session: Session, name: str, identity: EncoderIdentity) -> Space:
        """A new, empty space for ``identity``, flushed so it has its id."""
        space = Space(name=name, model=identity.model, fingerprint=identity.fingerprint,
                      dimension=identity.dimension, normalized=identity.normalized, generation=0)
        session.add(space)
        session.flush()
        return space

    def space(self, name: str, identity: EncoderIdentity, create: bool = True) -> Space | None:
        """The space ``name`` checked against ``identity`` (created for it if new and ``create``).

        A space built by a different encoder is a clear error naming the command that re-embeds.
        """
        with self.sessions() as session:
            space = session.scalar(select(Space).where(Space.name == name))
        if space is None and create:
            with self.write() as session:
                space = session.scalar(select(Space).where(Space.name == name))
                if space is None:
                    space = self.new_space(session, name, identity)
        if space is not None and (space.fingerprint, space.dimension) != (identity.fingerprint, identity.dimension):
            same_name = " (same name, different model files)" if space.model == identity.model else ""
            if not same_name and space.model.split(" (")[0] == identity.model.split(" (")[0]:
                same_name = " (the same model on another encoder backend: int8 backends compute other vectors)"
            raise EncoderMismatchError(
                f"the {name!r} space was built with {space.model!r} ({space.dimension} dimensions, "
                f"fingerprint {space.fingerprint[:12]}) but the configured encoder is {identity.model!r} "
                f"({identity.dimension} dimensions, fingerprint {identity.fingerprint[:12]}){same_name}. Open it with "
                f"the original model, or run `kb reembed` to re-embed every chunk with the configured one."
            )
        return space

    def notices(self) -> list[str]:
        """Standing notices: what the knowledge base cannot do for now, and why (say, no CLIP weights)."""
        with self.sessions() as session:
            return list(session.scalars(select(Meta.value).where(Meta.key.startswith(NOTICE_PREFIX))
                                        .order_by(Meta.key)))

    def record_notice(self, name: str, text: str | None) -> bool:
        """Set (or with None, clear) the standing notice ``name``; True when ``text`` was not already standing, so
        a missing optional model is told once per knowledge base, not on every run."""
        key = NOTICE_PREFIX + name
        with self.sessions() as session:
            if session.scalar(select(Meta.value).where(Meta.key == key)) == text:
                return False
        with self.write() as session:
            if text is None:
                session.execute(delete(Meta).where(Meta.key == key))
            else:
                session.merge(Meta(key=key, value=text))
        return True

    def has_space(self, name: str) -> bool:
        """Whether the space ``name`` has been built (cheap: no model is loaded to ask)."""
        with self.sessions() as session:
            return session.scalar(select(Space.id).where(Space.name == name)) is not None

    def check_keyword_tokenizer(self, name: str) -> None:
        """Record the keyword tokenizer on first use; querying with a different one later is a clear error."""
        if self._keyword_tokenizer_checked == name:
            return
        with self.sessions() as session:
            recorded = session.scalar(select(Meta.value).where(Meta.key == KEYWORD_TOKENIZER_KEY))
        if recorded is None:
            with self.write() as session:
                self.record_keyword_tokenizer(session, name)
        elif recorded != name:
            raise EncoderMismatchError(
                f"the keyword index was built with the {recorded!r} tokenizer but {name!r} is configured; "
                f"open with keyword_tokenizer={recorded!r}, or run `kb reembed` to rebuild it")
        self._keyword_tokenizer_checked = name

    @staticmethod
    def record_keyword_tokenizer(session: Session, name: str) -> None:
        session.merge(Meta(key=KEYWORD_TOKENIZER_KEY, value=name))

    def spaces(self) -> list[Space]:
        with self.sessions() as session:
            return list(session.scalars(select(Space).order_by(Space.id)))

    def index(self, space: Space, session: Session | None = None) -> VectorIndex:
        """The space's FAISS index in step with the database as ``session`` (default: a new one) sees it."""
        index = self._indexes.get(space.id)
        if index is None or index.dimension != space.dimension:
            index = VectorIndex(self.directory / "indexes", space.name, space.dimension, self.settings.index_factory)
            self._indexes[space.id] = index
        if session is not None:
            index.sync(session)
        else:
            with self.sessions() as own:
                index.sync(own)
        return index

    def loaded_indexes(self) -> list[VectorIndex]:
        return list(self._indexes.values())

    # -- writing (inside the writer's transaction) ------------------------------------------------------------

    @staticmethod
    def insert_vectors(session: Session, space_id: int, chunk_ids: list[int], vectors: np.ndarray) -> None:
        if chunk_ids:
            rows = [{"space_id": space_id, "chunk_id": chunk_id, "vector": vector.tobytes()}
                    for chunk_id, vector in zip(chunk_ids, vectors, strict=True)]
            session.execute(insert(Vector.__table__), rows)

    def vectors_by_hash(self, space_id: int, hashes: set[str], images: bool = False) -> dict[str, np.ndarray]:
        """Stored vectors in a space, one per hash: of text chunks by text hash, or of images by picture hash."""
        key = StoredImage.sha256 if images else Chunk.text_hash
        found: dict[str, np.ndarray] = {}
        wanted = sorted(hashes)
        with self.sessions() as session:
            for start in range(0, len(wanted), 500):
                query = select(key, Vector.vector).select_from(Chunk).join(Vector, Vector.chunk_id == Chunk.id)
                query = query.join(StoredImage, StoredImage.chunk_id == Chunk.id) if images else \
                    query.where(Chunk.modality == "text")
                rows = session.execute(query.where(Vector.space_id == space_id, key.in_(wanted[start : start + 500])))
                found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    @staticmethod
    def stored_vectors(session: Session, space: Space, chunk_ids: Iterable[int],
                       modality: str | None = None) -> tuple[list[int], np.ndarray]:
        """The stored vectors of these chunks in ``space`` (of one ``modality`` if given), as ids and a matrix;
        chunks without a vector there are left out."""
        ids: list[int] = []
        blobs: list[bytes] = []
        wanted = sorted(set(chunk_ids))
        for start in range(0, len(wanted), 500):
            query = select(Vector.chunk_id, Vector.vector).where(Vector.space_id == space.id,
                                                                 Vector.chunk_id.in_(wanted[start : start + 500]))
            if modality is not None:
                query = query.join(Chunk, Chunk.id == Vector.chunk_id).where(Chunk.modality == modality)
            for chunk_id, blob in session.execute(query):
                ids.append(int(chunk_id))
                blobs.append(blob)
        return ids, np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), space.dimension)

    @staticmethod
    def insert_postings(session: Session, chunk_ids: list[int], terms: list[list[str]]) -> None:
        """Keyword postings (term frequencies) of freshly inserted chunks."""
        rows = [
            {"term": term, "chunk_id": chunk_id, "tf": tf}
            for chunk_id, chunk_terms in zip(chunk_ids, terms, strict=True)
            for term, tf in Counter(t[:MAX_TERM_LENGTH] for t in chunk_terms).items()
        ]
        if rows:  # Core insert: the ORM's per-row bookkeeping would cost more than the insert itself
            session.execute(insert(Posting.__table__), rows)

    @staticmethod
    def bump_generations(session: Session, space_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """Advance spaces' generations inside the writing transaction; returns {space id: (previous, new)}."""
        bumps = {}
        for space_id in space_ids:
            previous = session.scalar(select(Space.generation).where(Space.id == space_id)) or 0
            session.execute(update(Space).where(Space.id == space_id).values(generation=previous + 1))
            bumps[space_id] = (previous, previous + 1)
        return bumps

    def apply_committed(self, bumps: dict[int, tuple[int, int]], added: dict[int, tuple[np.ndarray, np.ndarray]],
                        removed: list[int]) -> None:
        """After a commit, apply it to the loaded indexes (an index not at the previous generation goes stale)."""
        removed_ids = np.asarray(removed, dtype=np.int64)
        for space_id, (previous, generation) in bumps.items():
            index = self._indexes.get(space_id)
            if index is None:
                continue
            ids, vectors = added.get(space_id, (np.zeros(0, np.int64), np.zeros((0, index.dimension), np.float32)))
            index.apply(ids, vectors, removed_ids, generation, previous)

    # -- the one delete path ----------------------------------------------------------------------------------

    @staticmethod
    def delete_chunks(session: Session, chunk_ids: Iterable[int]) -> list[int]:
        """Remove chunks with their vectors (every space), keyword postings and images; returns the ids removed."""
        ids = list(chunk_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            session.execute(delete(Posting).where(Posting.chunk_id.in_(part)))
            session.execute(delete(Vector).where(Vector.chunk_id.in_(part)))
            session.execute(delete(StoredImage).where(StoredImage.chunk_id.in_(part)))
            session.execute(delete(Chunk).where(Chunk.id.in_(part)))
        return ids

    @classmethod
    def delete_document_content(cls, session: Session, document_id: int) -> list[int]:
        """Remove everything derived from a document, keeping its row; returns the chunk ids removed."""
        ids = session.scalars(select(Chunk.id).where(Chunk.document_id == document_id)).all()
        return cls.delete_chunks(session, ids)

    @classmethod
    def delete_documents(cls, session: Session, document_ids: Iterable[int]) -> list[int]:
        """Remove documents and everything derived from them; returns the chunk ids removed."""
        removed: list[int] = []
        for document_id in document_ids:
            removed += cls.delete_document_content(session, document_id)
            session.execute(delete(Document).where(Document.id == document_id))
        return removed

    # -- training material ----------------------------------------------------------------------------------

    def documents(self, batch: int = 200) -> Iterator[StoredDocument]:
        """Every ingested document with its text chunks, a batch of documents per read."""
        last = 0
        while True:
            with self.sessions() as session:
                rows = session.execute(select(Document.id, Document.path, Document.title, Document.text)
                                       .where(Document.status == "ok", Document.id > last)
                                       .order_by(Document.id).limit(batch)).all()
                if not rows:
                    return
                chunks: dict[int, list[StoredChunk]] = {row.id: [] for row in rows}
                for chunk in session.execute(select(Chunk.document_id, Chunk.text, Chunk.start, Chunk.end)
                                             .where(Chunk.document_id.in_(chunks), Chunk.modality == "text")
                                             .order_by(Chunk.document_id, Chunk.ordinal)):
                    chunks[chunk.document_id].append(StoredChunk(chunk.text, chunk.start, chunk.end))
            yield from (StoredDocument(row.path, row.title, row.text, chunks[row.id]) for row in rows)
            last = rows[-1].id

    def pictures(self) -> Iterator[StoredPicture]:
        """Every stored image with its description and preview."""
        with self.sessions() as session:
            for row in session.execute(select(Chunk.text, StoredImage.preview, Document.path)
                                       .join(StoredImage, StoredImage.chunk_id == Chunk.id)
                                       .join(Document, Document.id == Chunk.document_id).order_by(Chunk.id)):
                yield StoredPicture(row.text, row.preview, row.path)
