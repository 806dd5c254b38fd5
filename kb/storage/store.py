"""The storage of one knowledge base: its SQL database, embedding spaces and their FAISS caches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kb.atomic import abandoned_temporaries
from kb.config import Settings
from kb.containment import identity
from kb.encoders.base import EncoderIdentity
from kb.errors import ConfigurationError, DatabaseUnreadableError, EncoderMismatchError, KbError, StorageError
from kb.keywords import parse_scheme
from kb.storage.column_types import mistyped_values
from kb.storage.database import (
    DATABASE_FILE,
    WRITE_LOCK,
    changed_from_outside,
    default_url,
    open_database,
    schema_transaction,
    take_turn,
)
from kb.storage.faiss_index import FaissIndex
from kb.storage.lock import DatabaseWriterLock, WriterLock
from kb.storage.models import Chunk, Document, KeywordTotals, Meta, Space, StoredImage, Vector
from kb.storage.pgvector_index import PgvectorIndex, prepare
from kb.storage.posting_cache import PostingCache
from kb.storage.reading import Snapshot
from kb.storage.salvage import rebuild_from_tables
from kb.storage.vector_index import IndexKind, VectorIndex
from kb.storage.writing import KEYWORD_TOKENIZER_KEY, Changes, WriteUnit

NOTICE_PREFIX = "notice:"
VECTOR_INDEX_KEY = "vector_index"
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


def _vector_index_of(session: Session) -> IndexKind | None:
    """The vector index backend a knowledge base recorded; "faiss" for one built before the choice was recorded."""
    recorded = session.scalar(select(Meta.value).where(Meta.key == VECTOR_INDEX_KEY))
    if recorded is None and session.scalar(select(Vector.chunk_id).limit(1)) is not None:
        return "faiss"
    return cast("IndexKind | None", recorded)


class Store:
    """Database sessions, spaces and vector indexes of the knowledge base in ``directory``."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        self.directory = directory
        self.settings = settings
        self.url = settings.database_url or default_url(directory)
        self.sessions: sessionmaker[Session] = open_database(self.url)
        engine = self.sessions.kw["bind"]
        self.writer_lock: WriterLock | DatabaseWriterLock = DatabaseWriterLock(engine) \
            if engine.dialect.name == "postgresql" else WriterLock(directory / "write.lock")
        self._indexes: dict[int, VectorIndex] = {}
        self._modalities: tuple[int | None, frozenset[str]] | None = None  # (keyword index generation, chunk modalities)
        self.posting_cache = PostingCache(settings.keywords.cache_mb) if settings.keywords.cache_mb else None
        self.vector_index: IndexKind = self._recorded_vector_index(settings.index.kind)
        self._database_file = identity(directory / DATABASE_FILE) if self.url == default_url(directory) else None

    def check_database_file(self) -> None:
        """Raise ``DatabaseUnreadableError`` when the SQLite file this store opened was deleted or replaced (by
        ``kb doctor --repair``'s rebuild, say): a process that runs for days (the scheduler, a program holding the
        knowledge base open) would write on into the old file, every run reported ok. Checked at each read and
        write: one ``stat``."""
        if self._database_file is not None and identity(self.directory / DATABASE_FILE) != self._database_file:
            raise DatabaseUnreadableError(f"the database {self.directory / DATABASE_FILE} was deleted or replaced "
                                          "while this process ran; start it again")

    def _recorded_vector_index(self, configured: IndexKind) -> IndexKind:
        """The vector index backend recorded in the knowledge base (recorded on first use, by one process when
        several open it at once); a different one configured later is a clear error: the other backend's vectors
        were never indexed that way."""
        with self.sessions() as session:
            recorded = _vector_index_of(session)
        if recorded is None:
            with schema_transaction(self.sessions) as session:
                recorded = _vector_index_of(session)
                if recorded is None:
                    if configured == "pgvector":
                        prepare(session)
                    session.add(Meta(key=VECTOR_INDEX_KEY, value=configured))
                    recorded = configured
        if recorded != configured:
            raise ConfigurationError(f"this knowledge base's vectors are indexed with {recorded!r} but "
                                     f"vector_index={configured!r} is configured; open it with "
                                     f"vector_index={recorded!r}")
        return configured

    def close(self) -> None:
        self.sessions.kw["bind"].dispose()

    @property
    def rebuildable(self) -> bool:
        """Whether damage in the database's indexes can be repaired by :meth:`rebuild_from_tables`: the knowledge
        base's own SQLite file (a server looks after its own pages), not a link to one elsewhere (the new file would
        be made beside the link)."""
        return self._database_file is not None and not (self.directory / DATABASE_FILE).is_symlink()

    def rebuild_from_tables(self) -> Path:
        """Put a copy of the database rebuilt from its tables' rows in its place (``kb.storage.salvage``), this
        store's connections closed before and opened again on it after; returns where the damaged file was kept.
        The caller holds the writer lock."""
        self.close()
        try:
            return rebuild_from_tables(self.directory / DATABASE_FILE)
        finally:
            self.sessions = open_database(self.url)
            self._database_file = identity(self.directory / DATABASE_FILE)

    def abandoned_temporaries(self) -> list[Path]:
        """Temporary files that killed saves left in the knowledge base's folder and its index caches' folder (not
        through a symlink planted in its place: they would be deleted wherever it leads)."""
        indexes = self.directory / "indexes"
        return abandoned_temporaries(self.directory) + ([] if indexes.is_symlink() else abandoned_temporaries(indexes))

    # -- spaces ---------------------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[WriteUnit]:
        """A write unit of work (see ``kb.storage.writing``): on commit the spaces it touched get new generations
        and the loaded indexes the change. Write units take turns (``take_turn``: BEGIN IMMEDIATE on SQLite, an
        advisory lock on PostgreSQL), so a short write beside a running ingest waits for it (on SQLite up to the
        busy timeout) instead of failing on a stale snapshot, and two that record the same row never both insert it.

        A database that cannot be written (read-only, disk full) raises ``StorageError`` naming the cause.
        """
        try:
            with self.sessions.begin() as session:
                take_turn(session, WRITE_LOCK)
                self.check_database_file()  # once it is this process's turn: a rebuild holds the turn until done
                unit = WriteUnit(session, list(session.scalars(select(Space.id))), Snapshot(session, self),
                                 pgvector=getattr(self, "vector_index", None) == "pgvector",
                                 index_settings=self.settings.index)
                yield unit
                bumps = unit.bump_generations()
        except OperationalError as error:
            raise StorageError(f"the database cannot be written: {error.orig or error}") from error
        self.apply_committed(bumps, unit.changes)

    @contextmanager
    def read(self) -> Iterator[Snapshot]:
        """A read snapshot: one transaction, so every query in it sees one state of the knowledge base (on
        PostgreSQL a repeatable read: its default, read committed, lets each statement see a newer commit)."""
        self.check_database_file()
        with self.sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                yield Snapshot(session, self)
            except (TypeError, ValueError, LookupError) as error:
                damage = None if isinstance(error, KbError) else _changed_from_outside(session)
                if damage is None:
                    raise
                raise damage from error

    def space(self, name: str, identity: EncoderIdentity, create: bool = True) -> Space | None:
        """The space ``name`` checked against ``identity`` (created for it if new and ``create``).

        A space built by a different encoder is a clear error naming the command that re-embeds.
        """
        with self.sessions() as session:
            space = session.scalar(select(Space).where(Space.name == name))
        if space is None and create:
            with self.write() as unit:
                space = unit.space(name) or unit.new_space(name, identity.model, identity.fingerprint,
                                                           identity.dimension, identity.normalized)
        if space is not None and not identity.built(space.fingerprint, space.dimension):
            same_name = " (same name, different model files)" if space.model == identity.model else ""
            if not same_name and space.model.split(" (")[0] == identity.model.split(" (")[0]:
                same_name = " (the same model on another encoder backend: int8 backends compute other vectors)"
            raise EncoderMismatchError(
                f"the {name!r} space was built with {space.model!r} ({space.dimension} dimensions, "
                f"fingerprint {space.fingerprint[:12]}) but the configured encoder is {identity.model!r} "
                f"({identity.dimension} dimensions, fingerprint {identity.fingerprint[:12]}){same_name}. Open it with "
                f"the original model, or run `kb reembed` to re-embed every chunk with the configured one."
            )
        if space is not None and space.fingerprint != identity.fingerprint:
            self._upgrade_fingerprint(space, identity.fingerprint)
        return space

    def _upgrade_fingerprint(self, space: Space, fingerprint: str) -> None:
        """Record ``fingerprint`` for ``space``, whose record holds the same model's fingerprint under the previous
        fingerprint version (``EncoderIdentity.previous_fingerprint``): its vectors stay. Done under the writer
        lock; while another writer holds it, or the database is read-only, it is left for a later opening (the
        previous fingerprint is accepted meanwhile)."""
        try:
            with self.writer_lock, self.write() as unit:
                unit.upgrade_fingerprint(space.id, space.fingerprint, fingerprint)
        except (KbError, OSError):  # busy, read-only, or a lock file that cannot be made: left for later
            return
        space.fingerprint = fingerprint

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
        with self.write() as unit:
            unit.set_meta(key, text)
        return True

    def integrity_faults(self, shown: int = 5) -> list[str]:
        """What SQLite's own check of the file (``PRAGMA quick_check``: every page and tree, not whether each index
        agrees with its table, which ``integrity_check`` would read at more cost) finds wrong, the first ``shown``;
        none on PostgreSQL, whose server looks after its own pages."""
        with self.sessions() as session:
            if session.get_bind().dialect.name != "sqlite":
                return []
            try:
                said = list(session.scalars(text(f"PRAGMA quick_check({int(shown)})")))
            except DatabaseUnreadableError as error:  # a table's root page: the check itself stops on it
                return [f"{error.__cause__ or error} (the check stopped there)"]
        return [] if said == ["ok"] else [" ".join(fault.removeprefix("*** in database main ***").split())
                                          for fault in said]

    def mistyped_values(self) -> list[str]:
        """Columns of every table holding values that are not their type (written from outside this program), each
        with its count and first row (``kb.storage.column_types``); none on PostgreSQL, which refuses them."""
        with self.sessions() as session:
            return mistyped_values(session)

    def has_space(self, name: str) -> bool:
        """Whether the space ``name`` has been built (cheap: no model is loaded to ask)."""
        with self.sessions() as session:
            return session.scalar(select(Space.id).where(Space.name == name)) is not None

    def keyword_tokenizer(self) -> str | None:
        """The scheme of the tokenizer the keyword postings were made with (None before the first keyword use)."""
        with self.sessions() as session:
            return session.scalar(select(Meta.value).where(Meta.key == KEYWORD_TOKENIZER_KEY))

    def check_keyword_tokenizer(self, scheme: str) -> str:
        """The scheme the keyword postings were made with ("simple/2": name and version), recording ``scheme`` on
        first use; another tokenizer's is a clear error, the same one's in another version is returned to be used
        (another process rebuilt the postings since). Read at every call (one row by its key): a process that
        kept an answer would go on cutting questions, or indexing documents, for postings that are gone."""
        recorded = self.keyword_tokenizer()
        if recorded is None:
            with self.write() as unit:
                unit.record_keyword_tokenizer(scheme)
            return scheme
        (recorded_name, _), (name, _) = parse_scheme(recorded), parse_scheme(scheme)
        if recorded_name != name:
            raise EncoderMismatchError(
                f"the keyword index was built with the {recorded_name!r} tokenizer but {name!r} is configured; "
                f"open with keyword_tokenizer={recorded_name!r}, or run `kb reembed` to rebuild it")
        return recorded

    def spaces(self) -> list[Space]:
        with self.sessions() as session:
            return list(session.scalars(select(Space).order_by(Space.id)))

    def index(self, space: Space, session: Session | None = None) -> VectorIndex:
        """The space's vector index in step with the database as ``session`` (default: a new one) sees it."""
        index = self._indexes.get(space.id)
        if index is None or index.dimension != space.dimension:
            if self.vector_index == "pgvector":
                index = PgvectorIndex(self.sessions, space, self.settings.index.hnsw_ef_search)
            else:
                index = FaissIndex(self.directory / "indexes", space.name, space.dimension, self.settings.index)
            self._indexes[space.id] = index
        if session is not None:
            index.sync(session)
        else:
            with self.sessions() as own:
                index.sync(own)
        return index

    def chunk_modalities(self, session: Session) -> frozenset[str]:
        """The modalities of the stored chunks, read once per generation of the keyword index (which every write
        that adds or removes a chunk advances: it keeps the chunk count)."""
        generation = session.scalar(select(KeywordTotals.generation).where(KeywordTotals.id == 1))
        cached = self._modalities
        if generation is None or cached is None or cached[0] != generation:
            cached = (generation, frozenset(session.scalars(select(Chunk.modality).distinct())))
            if generation is not None:  # no totals row yet: nothing to key a kept answer by
                self._modalities = cached
        return cached[1]

    def loaded_indexes(self) -> list[VectorIndex]:
        return list(self._indexes.values())

    def save_caches(self, indexes: Iterable[VectorIndex]) -> str | None:
        """Save ``indexes``' caches after a commit. One that cannot be written (a full disk) is a notice, returned,
        not an error: the database holds everything, and the next search rebuilds the cache from it."""
        try:
            for index in indexes:
                index.save()
        except OSError as error:  # a StorageError (the cache cannot be written) is one
            return f"the index cache could not be saved ({error}); the next search rebuilds it from the database"
        return None

    def apply_committed(self, bumps: dict[int, tuple[int, int]], changes: Changes) -> None:
        """After a commit, apply it to the loaded indexes (an index not at the previous generation catches up from
        the change log at its next sync)."""
        removed_ids = np.asarray(changes.removed, dtype=np.int64)
        for space_id, (previous, generation) in bumps.items():
            index = self._indexes.get(space_id)
            if index is None:
                continue
            if space_id in changes.rebuilt:
                index.generation = -1  # every vector replaced (or malformed ones removed): rebuilt at its next sync
                continue
            ids, vectors = changes.vectors(space_id, index.dimension)
            index.apply(ids, vectors, removed_ids, generation, previous)

    # -- training material ----------------------------------------------------------------------------------

    def documents(self, batch: int = 200) -> Iterator[StoredDocument]:
        """Every ingested document with its text chunks, a batch of documents per read snapshot (so a re-ingest
        that commits meanwhile never pairs a document's old text with its new chunks)."""
        last = 0
        while True:
            with self.read() as snapshot:
                session = snapshot.session
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


def _changed_from_outside(session: Session) -> DatabaseUnreadableError | None:
    """After a read failed in Python (a number that was text, a path that was a number): the one line naming the
    values written into the database from outside this program that it failed on, if any are found (the whole
    database is checked only then: seconds on a large one)."""
    try:
        return changed_from_outside(session)
    except Exception:  # noqa: BLE001 - the read's own error says more than a check that could not run
        return None
