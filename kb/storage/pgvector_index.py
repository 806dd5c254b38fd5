"""A space's vectors searched inside PostgreSQL with pgvector: nothing to rebuild, nothing cached per machine.

``vectors.embedding`` (type ``vector``, beside the float32 bytes every backend keeps) holds each vector; each space
has a partial HNSW index on ``embedding::vector(dimension)`` with ``vector_cosine_ops`` (``vector_ip_ops`` for a
space whose vectors are not normalised). Every reader on every machine sees each commit at once: the index is the
database's own.

A search is one SQL query: an inner query orders the space's vectors alone by distance with a ``LIMIT`` (the shape
the HNSW index serves), the outer one joins chunks and documents for the filters. A filter that few chunks pass is
searched exactly instead (the planner walks those chunks first), and an approximate search left short of ``k`` by
its filters is repeated exactly, so filtered results are never silently short.

Writes go in with ``COPY`` (binary). HNSW grows row by row at a cost many times that of building it in one pass, so
a write unit that adds many vectors relative to what a space holds drops the space's index and builds it again
before its commit (``BulkIndexing``); other machines' dense searches wait for that commit meanwhile.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from kb.config import IndexSettings
from kb.errors import ConfigurationError
from kb.optional import require
from kb.storage.database import copy_rows
from kb.storage.filters import chunk_conditions, passing_chunks
from kb.storage.models import Chunk, Document, Space, Vector
from kb.storage.vector_index import EXACT_BELOW
from kb.types import Filters, Modality

MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
OVERFETCH = 2  # candidates per hit wanted when only the documents' status filters
FILTERED_OVERFETCH = 10  # candidates per hit wanted when many chunks pass the filters (short: searched again exactly)
BULK_MIN_VECTORS = 2_000  # fewer added vectors are never worth blocking readers for a rebuild
INSERT_COST = 8  # inserting one vector into an HNSW graph costs about this many times adding it to a fresh build
BUILD_MEMORY_PER_VECTOR = 256  # bytes of graph beside each vector's floats while building (m=16 neighbours)


def _vector_type(dimension: int | None = None) -> Any:
    """pgvector's SQLAlchemy type, imported only when the pgvector backend is used (the postgres extra)."""
    return require("pgvector.sqlalchemy", "vector_index='pgvector'").VECTOR(dimension)


def prepare(session: Session) -> None:
    """Make the database able to hold pgvector embeddings: the extension and the ``vectors.embedding`` column.

    Creating the extension needs a privileged role once per database (``CREATE EXTENSION vector``): a company's
    administrator may have done it already, then nothing is asked of the knowledge base's role.
    """
    if session.get_bind().dialect.name != "postgresql":
        raise ConfigurationError("vector_index='pgvector' needs a PostgreSQL database_url "
                                 "(postgresql+psycopg://...); SQLite uses the faiss index")
    installed = session.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
    if not installed:
        session.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    session.execute(text("ALTER TABLE vectors ADD COLUMN IF NOT EXISTS embedding vector"))
    if session.scalar(select(Vector.chunk_id).limit(1)) is not None:
        raise ConfigurationError("vector_index='pgvector' is chosen when a knowledge base is created; this one "
                                 "already holds vectors indexed otherwise")


def unsearchable(dimension: int) -> ColumnElement[bool]:
    """The condition on ``vectors`` for rows pgvector cannot search in a space of ``dimension``: no embedding (a
    NULL written from outside), or one of another dimension."""
    embedding = literal_column("vectors.embedding")
    return or_(embedding.is_(None), func.vector_dims(embedding) != int(dimension))


def _index_name(space_id: int) -> str:
    return f"ix_vectors_hnsw_{int(space_id)}"


def create_space_index(session: Session, space: Space, settings: IndexSettings) -> None:
    """The partial HNSW index of one space, built in one pass (dropped first if it exists), with enough
    ``maintenance_work_mem`` for the graph of the vectors it holds to be built in memory, up to
    ``pgvector_build_memory_mb``, and ``hnsw_ef_construction`` where it is set."""
    count = session.scalar(select(func.count()).select_from(Vector).where(Vector.space_id == space.id)) or 0
    memory_mb = count * (4 * int(space.dimension) + BUILD_MEMORY_PER_VECTOR) // 2**20 + 64
    memory_mb = min(memory_mb, settings.pgvector_build_memory_mb)
    session.execute(text(f"SET LOCAL maintenance_work_mem = '{memory_mb}MB'"))
    session.execute(text(f"DROP INDEX IF EXISTS {_index_name(space.id)}"))
    ops = "vector_cosine_ops" if space.normalized else "vector_ip_ops"
    options = "" if settings.hnsw_ef_construction is None else \
        f" WITH (ef_construction = {int(settings.hnsw_ef_construction)})"
    session.execute(text(f"CREATE INDEX {_index_name(space.id)} ON vectors USING hnsw "
                         f"((embedding::vector({int(space.dimension)})) {ops}){options} "
                         f"WHERE space_id = {int(space.id)}"))


def insert_vectors(session: Session, space_id: int, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Add vectors (float32 bytes and embedding) with one binary ``COPY``: no SQL text per row or per float.

    The embedding is sent in pgvector's binary form (dimension, a zero, big-endian float4s); psycopg passes bytes
    through as they are, and the server reads each field with the column's own type.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    header = struct.pack(">HH", vectors.shape[1], 0)
    rows = ((space_id, int(chunk_id), vector.tobytes(), header + stored.tobytes())
            for chunk_id, vector, stored in zip(chunk_ids, vectors, vectors.astype(">f4"), strict=True))
    copy_rows(session, "vectors", ("space_id", "chunk_id", "vector", "embedding"), rows,
              types=("int4", "int4", "bytea", "bytea"))


class BulkIndexing:
    """Which spaces a write unit leaves without their HNSW index until it ends (taken off while it adds many
    vectors, or created in it), built before commit; and which retired spaces' indexes go then.

    The rule compares costs: rebuilding indexes every vector of the space once, inserting costs ``INSERT_COST``
    times as much per added vector, so a unit adding at least 1/(INSERT_COST - 1) of what the space holds rebuilds.
    Dropping an index locks the table until commit (readers wait), so small writes never do it, and a space made
    in the unit (a new model, a re-embed) gets its index only at the end: nothing is dropped for it. Building one
    takes a lock that readers pass.
    """

    def __init__(self, settings: IndexSettings) -> None:
        self.settings = settings  # of each build (``create_space_index``)
        self.unbuilt: set[int] = set()
        self.retired: set[int] = set()

    def defer(self, space_id: int) -> None:
        """A space made in this unit: its index is built when the unit ends."""
        self.unbuilt.add(space_id)

    def retire(self, space_id: int) -> None:
        """A space this unit deleted: its index is dropped when the unit ends (readers use it until then)."""
        self.retired.add(space_id)

    def before_adding(self, session: Session, space_id: int, adding: int) -> None:
        if space_id in self.unbuilt or adding < BULK_MIN_VECTORS:
            return
        held = session.scalar(select(func.count()).select_from(Vector).where(Vector.space_id == space_id)) or 0
        if adding * (INSERT_COST - 1) >= held:
            session.execute(text(f"DROP INDEX IF EXISTS {_index_name(space_id)}"))
            self.unbuilt.add(space_id)

    def rebuild(self, session: Session) -> None:
        """Build the missing indexes (inside the unit's transaction, so readers never see a space without), refresh
        the table's statistics (planned with the counts from before the load, a search would scan), and last drop
        the retired spaces' indexes, so that readers wait for that lock only until the commit that follows."""
        for space_id in sorted(self.unbuilt):
            space = session.get(Space, space_id)
            if space is not None:  # a space the unit deleted has no index to build
                create_space_index(session, space, self.settings)
        if self.unbuilt:
            session.execute(text("ANALYZE vectors"))
        for space_id in sorted(self.retired):
            session.execute(text(f"DROP INDEX IF EXISTS {_index_name(space_id)}"))
        self.unbuilt.clear()
        self.retired.clear()


class PgvectorIndex:
    """The vector index contract (see ``kb.storage.vector_index``) over pgvector: its state is the database's."""

    def __init__(self, sessions: sessionmaker[Session], space: Space, ef_search: int) -> None:
        self.sessions = sessions
        self.space_id = space.id
        self.space_name = space.name
        self.dimension = space.dimension
        self.normalized = space.normalized
        self.generation = space.generation
        self.ef_search = ef_search

    @property
    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Vector).where(
                Vector.space_id == self.space_id, literal_column("vectors.embedding").is_not(None))) or 0

    def size_bytes(self) -> int:
        """The space's HNSW index on disk (PostgreSQL keeps what it reads of it in its shared buffers)."""
        with self.sessions() as session:
            return session.scalar(text(f"SELECT pg_relation_size('{_index_name(self.space_id)}')")) or 0

    def sync(self, session: Session) -> None:
        """Nothing to load or rebuild: the generation is noted for reports."""
        self.generation = session.scalar(select(Space.generation).where(Space.id == self.space_id)) or 0

    def apply(self, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray, generation: int,
              previous_generation: int) -> None:
        """The commit already changed the index (it is the table): only the generation moves."""
        self.generation = generation

    def save(self) -> None:
        """Nothing to save: PostgreSQL keeps the index."""

    def search(self, session: Session, query: np.ndarray, k: int, filters: Filters | None = None,
               modalities: frozenset[Modality] | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, similarity) in ``session``'s snapshot, filters in the same query (see the module's
        docstring for when it is approximate and when exact)."""
        if k <= 0:
            return []
        statement, exact = self._plan(session, query, k, filters, modalities)
        rows = session.execute(statement).all()
        if len(rows) < k and not exact:  # the candidates ran out before k of them passed the filters
            statement, _ = self._plan(session, query, k, filters, modalities, exact=True)
            rows = session.execute(statement).all()
        return [(int(chunk_id), float(value)) for chunk_id, value in rows]

    def explain(self, session: Session, query: np.ndarray, k: int, filters: Filters | None = None,
                modalities: frozenset[Modality] | None = None) -> str:
        """PostgreSQL's plan of the search ``search`` would run first (to check which index serves it)."""
        statement, _ = self._plan(session, query, k, filters, modalities)
        # Values written into the statement by a dialect that leaves ``%`` alone, run without parameters.
        compiled = statement.compile(dialect=postgresql.dialect(paramstyle="named"),
                                     compile_kwargs={"literal_binds": True})
        connection = session.connection().connection.driver_connection
        return "\n".join(row[0] for row in connection.execute(f"EXPLAIN {compiled}").fetchall())

    def _plan(self, session: Session, query: np.ndarray, k: int, filters: Filters | None,
              modalities: frozenset[Modality] | None, exact: bool = False) -> tuple[Select[Any], bool]:
        """The search statement, and whether it is exact; sets ``hnsw.ef_search`` for an approximate one.

        Approximate: the space's ``fetch`` nearest vectors by the HNSW index (``ef_search`` at least ``fetch``),
        then the filters. Exact: the distance is written as a function call, which no index can order by, so the
        planner filters first and measures every vector that passes.
        """
        vector_type = _vector_type(self.dimension)
        embedding = cast(literal_column("vectors.embedding"), vector_type)
        text_form = "[" + ",".join(f"{value:.9g}" for value in np.asarray(query, dtype=np.float32).reshape(-1)) + "]"
        probe = cast(literal(text_form, String), vector_type)  # a string: EXPLAIN can show the statement whole
        conditions = chunk_conditions(filters, modalities)
        fetch = k * OVERFETCH
        if len(conditions) > 1 and not exact:
            exact = passing_chunks(session, conditions, EXACT_BELOW + 1) <= EXACT_BELOW
            fetch = k * FILTERED_OVERFETCH
        # A literal space id: a partial index (WHERE space_id = N) serves only a plan that knows N. A NULL embedding
        # (written from outside; doctor repairs it) has no distance to rank by.
        in_space = and_(Vector.space_id == bindparam("space", self.space_id, literal_execute=True),
                        literal_column("vectors.embedding").is_not(None))
        if exact:
            name = "cosine_distance" if self.normalized else "vector_negative_inner_product"
            distance = getattr(func, name)(embedding, probe, type_=Float)
            candidates = select(Vector.chunk_id, distance.label("distance")).where(in_space).subquery("candidates")
        else:
            fetch = min(fetch, MAX_EF_SEARCH)
            session.execute(text(f"SET LOCAL hnsw.ef_search = {min(max(self.ef_search, fetch), MAX_EF_SEARCH)}"))
            distance = embedding.op("<=>" if self.normalized else "<#>", return_type=Float)(probe)
            candidates = (select(Vector.chunk_id, distance.label("distance")).where(in_space)
                          .order_by(distance).limit(fetch).subquery("candidates"))
        score = (1.0 - candidates.c.distance) if self.normalized else -candidates.c.distance
        statement = (select(candidates.c.chunk_id, score.label("score"))
                     .join(Chunk, Chunk.id == candidates.c.chunk_id).join(Document, Document.id == Chunk.document_id)
                     .where(*conditions).order_by(candidates.c.distance, candidates.c.chunk_id).limit(k))
        return statement, exact
