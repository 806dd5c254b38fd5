"""Opening the SQL database: SQLite in WAL mode by default, any SQLAlchemy URL otherwise, schema version checked."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from kb.errors import ConfigurationError, SchemaError
from kb.storage import bm25
from kb.storage.models import (
    SCHEMA_VERSION,
    Base,
    KeywordTerm,
    KeywordTotals,
    Meta,
    Posting,
    StoredImage,
    VectorChange,
    text_hash,
)
from kb.storage.urls import redact


def _add_schedules_and_chunk_hashes(session: Session) -> None:
    """v1 -> v2: sources gain a schedule; chunks gain a text hash so identical text is embedded once."""
    session.execute(text("ALTER TABLE sources ADD COLUMN schedule VARCHAR(256)"))
    session.execute(text("ALTER TABLE sources ADD COLUMN next_run_at DATETIME"))
    session.execute(text("ALTER TABLE chunks ADD COLUMN text_hash VARCHAR(64) NOT NULL DEFAULT ''"))
    rows = session.execute(text("SELECT id, text FROM chunks")).all()
    if rows:
        session.execute(text("UPDATE chunks SET text_hash = :hash WHERE id = :id"),
                        [{"id": chunk_id, "hash": text_hash(chunk_text)} for chunk_id, chunk_text in rows])
    session.execute(text("CREATE INDEX ix_chunks_text_hash ON chunks (text_hash)"))


def _add_images(session: Session) -> None:
    """v2 -> v3: image chunks get a row with their picture's name, size, hash and preview."""
    StoredImage.__table__.create(session.connection())


def _widen_file_numbers(session: Session) -> None:
    """v3 -> v4: a file's size and modification time in nanoseconds are 64-bit. SQLite's INTEGER always was; on
    PostgreSQL the 32-bit column made every file fail to store (a time in nanoseconds does not fit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE documents ALTER COLUMN size TYPE BIGINT, "
                             "ALTER COLUMN mtime_ns TYPE BIGINT"))


def _keep_keyword_figures(session: Session) -> None:
    """v4 -> v5: postings carry their chunk's keyword length (on PostgreSQL in the primary key's index too), so
    BM25 scores the postings alone; the terms' document frequencies and the chunk count and length sum live in two
    small tables instead of being counted at every search. The postings are copied into the new table (an UPDATE
    of every row costs ten times as much); any whose chunk is gone, which doctor would remove, are left behind."""
    session.execute(text("ALTER TABLE postings RENAME TO postings_v4"))
    session.execute(text("DROP INDEX ix_postings_chunk"))
    if session.get_bind().dialect.name == "postgresql":  # the old key's index would take the new one's name
        session.execute(text("ALTER INDEX postings_pkey RENAME TO postings_v4_pkey"))
    for table in (Posting.__table__, KeywordTerm.__table__, KeywordTotals.__table__):
        table.create(session.connection())
    session.execute(text("INSERT INTO postings (term, chunk_id, tf, length) SELECT p.term, p.chunk_id, p.tf, "
                         "c.keyword_length FROM postings_v4 p JOIN chunks c ON c.id = p.chunk_id"))
    session.execute(text("DROP TABLE postings_v4"))
    bm25.recount(session)


def _log_vector_changes(session: Session) -> None:
    """v5 -> v6: the change log of each space's vectors (``vector_changes``), and the generation it starts from
    (``spaces.logged_from``): an empty log describes no generation before the current one, so every space's log
    starts at its current generation, and a process whose index is older loads or rebuilds it as before."""
    VectorChange.__table__.create(session.connection())
    session.execute(text("ALTER TABLE spaces ADD COLUMN logged_from INTEGER NOT NULL DEFAULT 0"))
    session.execute(text("UPDATE spaces SET logged_from = generation"))


# Migrations from version N to N+1, applied in order inside one transaction.
MIGRATIONS: dict[int, Callable[[Session], None]] = {1: _add_schedules_and_chunk_hashes, 2: _add_images,
                                                    3: _widen_file_numbers, 4: _keep_keyword_figures,
                                                    5: _log_vector_changes}


IMMEDIATE = "kb_begin_immediate"  # execution option: this transaction will write (see Store.write)
SCHEMA_LOCK = 0x6B625F7363  # "kb_sc": the advisory lock of schema changes on PostgreSQL


def default_url(kb_dir: Path) -> str:
    return f"sqlite:///{(kb_dir / 'kb.sqlite').resolve()}"


def _configure_sqlite(engine: Engine) -> None:
    """WAL (readers never blocked by the writer) and real transactions: Python's sqlite3 begins none before a
    SELECT, so without an explicit BEGIN each query of a search would see a different state."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_database(url: str) -> sessionmaker[Session]:
    """Connect, create the schema on an empty database, migrate an old one, refuse a newer one.

    Processes that open one new or old database at the same moment take turns (``schema_transaction``): the first
    creates or migrates, the others find it done. The URL appears in messages only with its secrets hidden.
    """
    try:
        engine = create_engine(url)
    except (ArgumentError, ValueError) as error:
        raise ConfigurationError(f"cannot use the database URL {redact(url)}: {type(error).__name__}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session:
        current = _recorded_version(session, url) == SCHEMA_VERSION
    if not current:
        with schema_transaction(factory) as session:
            _create_or_migrate(session, url)
    return factory


@contextmanager
def schema_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that alone may change the schema or what is recorded at creation: on SQLite it takes the
    write lock at BEGIN, on PostgreSQL an advisory lock held until it ends. Whoever waited looks again inside it."""
    with factory.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        else:
            session.connection(execution_options={IMMEDIATE: True})
        yield session


def _recorded_version(session: Session, url: str) -> int | None:
    """The schema version of the database, None when it is empty; a newer or a foreign schema is refused."""
    tables = set(inspect(session.connection()).get_table_names())
    if "meta" not in tables:
        if tables & set(Base.metadata.tables):
            raise SchemaError(f"{redact(url)} holds tables but no schema version; it was not made by this program")
        return None
    version = int(session.scalar(select(Meta.value).where(Meta.key == "schema_version")) or 0)
    if version > SCHEMA_VERSION:
        raise SchemaError(f"this knowledge base has schema version {version}, newer than this program's "
                          f"{SCHEMA_VERSION}; upgrade the program to open it")
    return version


def _create_or_migrate(session: Session, url: str) -> None:
    """Inside ``schema_transaction``: the schema created on an empty database, or migrated step by step."""
    version = _recorded_version(session, url)
    if version is None:
        Base.metadata.create_all(session.connection())
        bm25.recount(session)
        session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise SchemaError(f"no migration from schema version {version}; rebuild the knowledge base")
        MIGRATIONS[version](session)
        version += 1
        session.merge(Meta(key="schema_version", value=str(version)))


def schema_version(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(Meta.value).where(Meta.key == "schema_version")) or 0)


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
              types: Sequence[str] | None = None) -> None:
    """Rows into a PostgreSQL table with one ``COPY`` (binary when ``types`` names the columns' types) inside the
    session's transaction: executemany sends a statement per row. A row the database rejects raises SQLAlchemy's
    error, as an insert would (so a savepoint treats it like any rejected data)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN" + (" WITH (FORMAT BINARY)" if types else "")
    driver = session.connection().connection.driver_connection
    dbapi = session.get_bind().dialect.loaded_dbapi  # psycopg
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            if types:
                copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as error:  # psycopg's own error: raised as SQLAlchemy's, as any other statement's would be
        raise DBAPIError.instance(statement, None, error, dbapi.Error) from error
