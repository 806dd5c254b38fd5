"""The SQL data model: the database is the truth; FAISS files are caches derived from ``vectors``."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 9  # the newest revision in kb/storage/migrations/versions
VERSION_TABLE = "kb_alembic_version"  # Alembic's record of the revision (its default name left to other programs)
PREVIEW_SIDE = 256  # pixels on the shorter side of a stored image preview: CLIP models crop 224 or less


def utcnow() -> datetime:
    """Now, as naive UTC: every timestamp in the database is naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def text_hash(text: str) -> str:
    """SHA-256 of a chunk's text: identical text shares one embedding per space."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_time(mtime_ns: int) -> datetime:
    """A file's modification time as naive UTC."""
    return datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc).replace(tzinfo=None)


def as_utc(moment: datetime) -> datetime:
    """A user's datetime (aware, or naive meaning UTC) as naive UTC, for comparing with stored timestamps. A moment
    within hours of year 1 or 9999 whose UTC falls outside what ``datetime`` holds (``0001-01-01T00:00+14:00``) is
    the nearest it holds: every stored time compares with either as with the moment itself."""
    if not moment.tzinfo:
        return moment
    try:
        return moment.astimezone(timezone.utc).replace(tzinfo=None)
    except OverflowError:
        return datetime.min if moment.year == datetime.min.year else datetime.max


# A document's status: "ok" (its text is indexed), "empty" (it was read and holds no text: a scan without OCR, an
# image with nothing written in it; its pictures are still kept), "failed" (never read; ``error`` says why). A
# document that fails after a good version keeps that version and its status, with the new ``error``.
INGESTED = ("ok", "empty")


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the database itself, such as ``schema_version``."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# The longest source folder or document path (UTF-8 bytes) stored: PostgreSQL's unique indexes on ``sources.path``
# and ``documents.path`` take an entry of at most 2,704 bytes (a third of a page, less headers), so a longer path
# cannot be stored there; SQLite keeps the same limit, so a knowledge base behaves alike on both.
MAX_PATH_BYTES = 2_600
# File times are stored in nanoseconds in a 64-bit integer column: 1677 to 2262. A time outside (a bogus date from
# an archive, `touch -d 2300-01-01`) is kept at the nearest end, so the file is still read; its changes are then
# found by its content's hash, as the time can no longer show them.
TIME_RANGE_NS = (-(2**63), 2**63 - 1)
MAX_SCHEDULE_LENGTH = 256  # characters of a stored schedule (``sources.schedule``)


class Source(Base):
    """A folder the knowledge base ingests."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    schedule: Mapped[str | None] = mapped_column(String(MAX_SCHEDULE_LENGTH), nullable=True)  # cron or "every 15m"
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Its mounts as its last run found them (kb.mounts.SourceMounts as JSON text, parsed by its reader only, so
    # that a value damaged by hand fails no query); None until a run records them.
    mounts: Mapped[str | None] = mapped_column(Text, nullable=True)
    documents: Mapped[list[Document]] = relationship(back_populates="source", passive_deletes=True)


class Document(Base):
    """A file seen in a source: either ingested (``status='ok'``) or failed with its reason."""

    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    relpath: Mapped[str] = mapped_column(String(4096))
    file_type: Mapped[str] = mapped_column(String(32), index=True)
    size: Mapped[int] = mapped_column(BigInteger)  # 64 bits: PostgreSQL's INTEGER is 32 (sizes over 2 GiB,
    mtime_ns: Mapped[int] = mapped_column(BigInteger)  # and every nanosecond time since 1970)
    modified_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    pages: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    # Files of the source it shows but does not hold (an HTML or Markdown page's pictures): [path, size, mtime_ns]
    # each, -1 for one not there, as they were when it was read; None for a document read before version 9.
    referenced_files: Mapped[list[list[Any]] | None] = mapped_column(JSON, nullable=True, default=list)
    ingested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    source: Mapped[Source] = relationship(back_populates="documents")
    chunks: Mapped[list[Chunk]] = relationship(back_populates="document", passive_deletes=True)


class Chunk(Base):
    """A passage of a document: ``document.text[start:end] == text``."""

    __tablename__ = "chunks"
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(16), default="text")
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64), index=True, default="")
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    keyword_length: Mapped[int] = mapped_column(Integer, default=0)
    document: Mapped[Document] = relationship(back_populates="chunks")


class StoredImage(Base):
    """The picture behind an image chunk: its name in its file, original size, hash, and a small JPEG preview.

    The chunk's ``text`` is the image's description (alt text, caption, nearby or OCR text) and its
    ``[start, end)`` the span of the document text the image belongs with. The preview (shorter side at most
    ``PREVIEW_SIDE`` pixels) lets a user see an embedded image and lets ``kb reembed`` rebuild the CLIP space.
    """

    __tablename__ = "images"
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    preview: Mapped[bytes] = mapped_column(LargeBinary)


class Space(Base):
    """An embedding space: one encoder identity, one FAISS index, a generation bumped on every vector change.
    ``vector_changes`` describes every generation after ``logged_from`` (with ``vector_index=faiss``)."""

    __tablename__ = "spaces"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    dimension: Mapped[int] = mapped_column(Integer)
    normalized: Mapped[bool] = mapped_column(default=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    logged_from: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Vector(Base):
    """One chunk's embedding in one space, as float32 bytes."""

    __tablename__ = "vectors"
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    __table_args__ = (Index("ix_vectors_chunk", "chunk_id"),)


class VectorChange(Base):
    """The change log of a space's vectors: a chunk whose vector was added, replaced or removed at ``generation``,
    written by the write unit in the transaction that made the change. Another process's FAISS index catches up
    from its generation by reading the vectors of these chunks (none: removed) instead of reloading everything.
    No foreign key to ``chunks``: a removed chunk's row is gone."""

    __tablename__ = "vector_changes"
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    __table_args__ = ({"sqlite_with_rowid": False},)


class Posting(Base):
    """BM25 keyword index: how often ``term`` occurs in a chunk, with the chunk's keyword length (BM25's document
    length), so that scoring reads the postings alone: on SQLite the table is its primary key, on PostgreSQL the
    primary key's index includes both numbers. Portable SQL, deleted with its chunk."""

    __tablename__ = "postings"
    term: Mapped[str] = mapped_column(String(128))
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"))
    tf: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)
    __table_args__ = (PrimaryKeyConstraint("term", "chunk_id", postgresql_include=["tf", "length"]),
                      Index("ix_postings_chunk", "chunk_id"), {"sqlite_with_rowid": False})


class KeywordTerm(Base):
    """In how many chunks a term occurs (BM25's document frequency), kept by the write unit so that a search reads
    it instead of counting postings."""

    __tablename__ = "keyword_terms"
    term: Mapped[str] = mapped_column(String(128), primary_key=True)
    chunks: Mapped[int] = mapped_column(Integer)
    __table_args__ = ({"sqlite_with_rowid": False},)


class KeywordTotals(Base):
    """One row (``id`` 1): how many chunks there are and the sum of their keyword lengths (BM25's corpus size and
    average length), kept by the write unit so that a search does not scan ``chunks``; and the keyword index's
    generation, advanced by every write that changes postings or these totals (what cached postings are keyed by)."""

    __tablename__ = "keyword_totals"
    id: Mapped[int] = mapped_column(primary_key=True)
    chunks: Mapped[int] = mapped_column(BigInteger, default=0)
    length: Mapped[int] = mapped_column(BigInteger, default=0)
    generation: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Run(Base):
    """One ingest run and its outcome."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    failures: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


__all__ = [
    "SCHEMA_VERSION",
    "VERSION_TABLE",
    "Base",
    "Chunk",
    "Document",
    "INGESTED",
    "KeywordTerm",
    "KeywordTotals",
    "Meta",
    "Posting",
    "Run",
    "Source",
    "Space",
    "StoredImage",
    "Vector",
    "VectorChange",
    "as_utc",
    "text_hash",
    "file_time",
    "utcnow",
]
