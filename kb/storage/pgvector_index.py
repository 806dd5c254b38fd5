"""A space's vectors searched inside PostgreSQL with pgvector: nothing to rebuild, nothing cached per machine.

``vectors.embedding`` (type ``vector``, beside the float32 bytes every backend keeps) holds each vector; each space
has a partial HNSW index on ``embedding::vector(dimension)`` with ``vector_cosine_ops`` (``vector_ip_ops`` for a
space whose vectors are not normalised). Filters join the same query, so they are applied with the vector search.
Every reader on every machine sees each commit at once: the index is the database's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Column, Float, MetaData, Table, bindparam, cast, func, literal_column, select, text
from sqlalchemy.orm import Session, sessionmaker

from kb.errors import ConfigurationError
from kb.optional import require
from kb.storage.filters import chunk_conditions
from kb.storage.models import Chunk, Document, Space, Vector
from kb.types import Filters, Modality

EF_SEARCH = 40  # pgvector's default candidate list; raised for deep or filtered searches
FILTERED_EF_FACTOR = 8  # a filtered search looks at this many candidates per hit wanted before filtering


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


def create_space_index(session: Session, space: Space) -> None:
    """The partial HNSW index of one space (dropped and made again when the space's dimension changes)."""
    name = f"ix_vectors_hnsw_{space.id}"
    session.execute(text(f"DROP INDEX IF EXISTS {name}"))
    ops = "vector_cosine_ops" if space.normalized else "vector_ip_ops"
    session.execute(text(f"CREATE INDEX {name} ON vectors USING hnsw ((embedding::vector({int(space.dimension)})) "
                         f"{ops}) WHERE space_id = {int(space.id)}"))


def embedding_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``vectors`` with the embedding beside the float32 bytes."""
    return [{**row, "embedding": np.frombuffer(row["vector"], dtype=np.float32)} for row in rows]


def vectors_table() -> Table:
    """``vectors`` with its ``embedding`` column, for inserts (not part of the portable schema)."""
    columns = [Column(column.name, column.type) for column in Vector.__table__.columns]
    return Table("vectors", MetaData(), *columns, Column("embedding", _vector_type()))


class PgvectorIndex:
    """The vector index contract (see ``kb.storage.vector_index``) over pgvector: its state is the database's."""

    def __init__(self, sessions: sessionmaker[Session], space: Space) -> None:
        self.sessions = sessions
        self.space_id = space.id
        self.space_name = space.name
        self.dimension = space.dimension
        self.normalized = space.normalized
        self.generation = space.generation

    @property
    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Vector).where(
                Vector.space_id == self.space_id, literal_column("vectors.embedding").is_not(None))) or 0

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
        """Top ``k`` (chunk id, similarity) in ``session``'s snapshot, filters in the same query.

        HNSW filters after it walks its candidate list, so a filtered search widens the list and, if still short
        of ``k`` hits while more rows pass the filter, searches those rows exactly.
        """
        if k <= 0:
            return []
        vector_type = _vector_type(self.dimension)
        embedding = cast(literal_column("vectors.embedding"), vector_type)
        probe = cast(np.asarray(query, dtype=np.float32).reshape(-1), vector_type)
        if self.normalized:
            distance = embedding.op("<=>", return_type=Float)(probe)
            score = (1.0 - distance).label("score")
        else:
            distance = embedding.op("<#>", return_type=Float)(probe)
            score = (-distance).label("score")
        conditions = chunk_conditions(filters, modalities)
        filtered = len(conditions) > 1
        statement = (select(Vector.chunk_id, score).join(Chunk, Chunk.id == Vector.chunk_id)
                     .join(Document, Document.id == Chunk.document_id)
                     .where(Vector.space_id == bindparam("space", self.space_id, literal_execute=True), *conditions)
                     .order_by(distance, Vector.chunk_id).limit(k))
        # A literal space id: a partial index (WHERE space_id = N) serves only a plan that knows N.
        ef = max(EF_SEARCH, k * (FILTERED_EF_FACTOR if filtered else 2))
        session.execute(text(f"SET LOCAL hnsw.ef_search = {min(ef, 1000)}"))
        rows = session.execute(statement).all()
        if len(rows) < k:  # the candidate list ran dry before k rows passed: exact over what passes
            session.execute(text("SET LOCAL enable_indexscan = off"))
            rows = session.execute(statement).all()
            session.execute(text("SET LOCAL enable_indexscan = on"))
        return [(int(chunk_id), float(value)) for chunk_id, value in rows]
